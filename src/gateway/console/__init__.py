"""The gateway's web console: people sign in and see and decide what waits for them."""
