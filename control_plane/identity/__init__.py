"""Who is asking: API tokens and OIDC bearer JWTs."""
