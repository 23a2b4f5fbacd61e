"""What the gateway can be configured to do: one frozen model per table of its settings files.

Every part of the gateway imports the section it reads from here, and this package imports
nothing of the gateway, so settings never pull in the code they configure. Reading the files
into these models (TOML, `${VAR}` references, errors naming file and line) is `gateway.config`.
"""
