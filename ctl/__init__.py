"""agctl: the command-line client of antigravityd's admin socket."""
