// Package version holds the build version, stamped in with
// -ldflags "-X github.com/market-data-store/mds/internal/version.Version=v1.2.3".
package version
