"""REST APIs described by OpenAPI documents, as connectors.

`operations` holds what a converted operation is (the interface the calling side uses),
`conversion` turns a spec and a connector file's curation into those operations, and
`spec_loading` reads a spec from a file or a URL (cached on disk).
"""
