// Package dbtest holds the tests of the coordinator writing to the real
// store on a throwaway PostgreSQL: a lock held past the write deadline, a
// database outage, and a trigger refusing every row. They live apart from
// the coordinator's unit tests, which need no database.
package dbtest
