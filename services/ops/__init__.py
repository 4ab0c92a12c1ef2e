"""Operations: consumer-lag reading, Burrow-style status, the lag exporter, topic checks."""
