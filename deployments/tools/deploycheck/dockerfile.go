package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// checkDockerfile parses path the way BuildKit's Dockerfile frontend does.
func checkDockerfile(path string, probs *problems) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		probs.addf("%s: %v", path, err)
		return "", nil
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		probs.addf("%s:%d: lint %s: %s", path, firstLine(loc), rule, msg)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		probs.addf("%s: %v", path, err)
		return "", nil
	}
	if len(stages) == 0 {
		probs.addf("%s: no FROM stage", path)
		return "", nil
	}
	final := stages[len(stages)-1]
	user := ""
	for _, cmd := range final.Commands {
		if u, ok := cmd.(*instructions.UserCommand); ok {
			user = u.User
		}
	}
	switch name := strings.SplitN(user, ":", 2)[0]; name {
	case "":
		probs.addf("%s: final stage %q sets no USER (it would run as root)", path, final.BaseName)
	case "root", "0":
		probs.addf("%s: final stage %q runs as root", path, final.BaseName)
	}
	return fmt.Sprintf("%s: %d stages, final FROM %s as USER %s", path, len(stages), final.BaseName, user), nil
}

func firstLine(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}
