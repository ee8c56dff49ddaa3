package startapi

// Internals the external tests look at.

// ParseEnvVars is parseEnvVars.
var ParseEnvVars = parseEnvVars

// EnvOf is the environment each of a's functions runs with.
func EnvOf(a *App) map[string]map[string]string { return a.env }

// WarningsOf is a's configuration warnings.
func WarningsOf(a *App) []string { return a.warnings }
