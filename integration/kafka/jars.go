package kafkatest

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Version is the Apache Kafka release the tier runs; pom.xml pins the same.
const Version = "4.4.0"

// EnvCacheDir overrides where the broker's jars are cached.
const EnvCacheDir = "MDS_IT_KAFKA_CACHE_DIR"

//go:embed pom.xml
var pom []byte

// ErrNoJava is returned (wrapped in one line naming what to install) when
// java or mvn is not on PATH.
var ErrNoJava = errors.New("the Kafka broker tier needs java (17+) and mvn on PATH (Debian: apt-get install -y maven openjdk-17-jre-headless), or set MDS_IT_KAFKA=kfake")

var jarsOnce struct {
	sync.Mutex
	dir string
}

// Classpath returns the broker's classpath (a directory wildcard), copying
// the jars from Maven Central into the cache on first use. Later calls,
// also from other processes, reuse the cache.
func Classpath() (string, error) {
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s not found: %w", tool, ErrNoJava)
		}
	}
	jarsOnce.Lock()
	defer jarsOnce.Unlock()
	if jarsOnce.dir != "" {
		return filepath.Join(jarsOnce.dir, "*"), nil
	}
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	libs := filepath.Join(dir, "libs")
	if _, err := os.Stat(filepath.Join(libs, "kafka_2.13-"+Version+".jar")); err != nil {
		if err := resolve(dir, libs); err != nil {
			return "", err
		}
	}
	jarsOnce.dir = libs
	return filepath.Join(libs, "*"), nil
}

func cacheDir() (string, error) {
	if d := os.Getenv(EnvCacheDir); d != "" {
		return filepath.Join(d, Version), nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory for the Kafka jars (set %s): %w", EnvCacheDir, err)
	}
	return filepath.Join(base, "mds-kafka", Version), nil
}

// resolve runs mvn on the embedded descriptor into a fresh directory and
// renames it to libs, so that a half-copied cache is never used.
func resolve(dir, libs string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, "resolve-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	pomPath := filepath.Join(tmp, "pom.xml")
	if err := os.WriteFile(pomPath, pom, 0o644); err != nil {
		return err
	}
	out := filepath.Join(tmp, "libs")
	cmd := exec.Command("mvn", "-q", "-B", "-f", pomPath, "dependency:copy-dependencies", "-DoutputDirectory="+out)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mvn dependency:copy-dependencies for kafka_2.13 %s: %w: %s", Version, err, lastLines(buf.String(), 5))
	}
	_ = os.RemoveAll(libs)
	if err := os.Rename(out, libs); err != nil {
		return fmt.Errorf("caching the Kafka jars: %w", err)
	}
	return nil
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keep = append(keep, l)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, " | ")
}
