"""The web app behind `sparkamp serve`: what it loads once, its HTTP API, and its page."""
