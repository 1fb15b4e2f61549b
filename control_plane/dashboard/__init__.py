"""The web dashboard: server-rendered pages behind the API's login and policy."""
