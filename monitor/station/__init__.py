"""`vigil station`: the nurses' central station, a web page for the whole ward (docs/station.md).

`server` is the aiohttp process (HTTP, the WebSocket, the ward link), `ward` what it knows of
the beds, `store` its SQLite file, `settings` its config; `static/` is the page itself, plain
ES modules and CSS with no build step.
"""
