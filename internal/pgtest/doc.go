// Package pgtest gives tests a real PostgreSQL database.
//
// A test package calls Main from its TestMain. When MDS_TEST_DATABASE_URL is
// set, tests use that server (make test sets it to one throwaway cluster for
// the whole run); otherwise Main starts a throwaway cluster with package
// pgtemp for the package and removes it afterwards. NewDatabase creates a
// fresh, empty database per test and drops it when the test ends.
package pgtest
