"""The links API: organisations, API keys, campaigns, links, bulk recipients and SMS rendering."""
