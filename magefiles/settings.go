package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// dotEnvFile holds the versions and image names shared with docker compose.
const dotEnvFile = ".env"

// setting returns a variable from the environment, else from .env, else def:
// the same precedence docker compose applies.
func setting(key, def string) (string, error) {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v, nil
	}
	vars, err := readDotEnv(dotEnvFile)
	if err != nil {
		return "", err
	}
	if v, ok := vars[key]; ok && v != "" {
		return v, nil
	}
	return def, nil
}

// readDotEnv parses KEY=VALUE lines; blank lines and # comments are skipped.
func readDotEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE, got %q", path, n, line)
		}
		vars[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return vars, nil
}
