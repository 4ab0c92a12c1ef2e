# One image for every Clicktrack process; the command picks the service.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir . && useradd --system --uid 10001 clicktrack
USER clicktrack
CMD ["python", "-m", "services.redirector"]
