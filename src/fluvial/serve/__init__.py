"""Serving: the operational store that stream pipelines write and the API reads."""
