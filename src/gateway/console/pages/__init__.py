"""The console's pages, one module per section; each exposes `routes(services, guard)`."""
