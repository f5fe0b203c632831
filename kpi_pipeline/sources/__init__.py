"""Source mappings: read what a help desk, status page or event collector exports as the contract.

``model`` holds the ``sources:`` section of kpi.yaml, ``presets`` the mapping
files shipped in ``presets/``, ``mapping`` turns a source file's columns into
contract fields, ``files`` finds and reads a configured source, and
``importer`` splits a many-day telemetry export into daily folders.
"""
