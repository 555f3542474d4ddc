"""Developer tools that are not part of the library's API: compile reports, build checks, test-environment helpers."""
