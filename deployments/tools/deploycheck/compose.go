package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// checkCompose loads path with the loader that `docker compose config` uses.
func checkCompose(path string, probs *problems) (string, error) {
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return "", err
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		probs.addf("%s: %v", path, err)
		return "", nil
	}
	for _, name := range project.ServiceNames() {
		svc := project.Services[name]
		if svc.Build != nil {
			mustExist(probs, path, name, "build context", svc.Build.Context)
			if svc.Build.Dockerfile != "" {
				df := svc.Build.Dockerfile
				if !filepath.IsAbs(df) {
					df = filepath.Join(svc.Build.Context, df)
				}
				mustExist(probs, path, name, "dockerfile", df)
			}
		}
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				mustExist(probs, path, name, "bind mount source", v.Source)
			}
		}
	}
	return fmt.Sprintf("%s: project %q, %d services", path, project.Name, len(project.Services)), nil
}

func mustExist(probs *problems, file, service, what, p string) {
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		probs.addf("%s: service %s: %s %s does not exist", file, service, what, p)
	}
}
