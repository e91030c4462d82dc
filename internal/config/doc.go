// Package config loads settings from the environment into the plain Config
// structs of the other packages. It is the only place that reads MDS_*
// variables, and it uses github.com/caarlos0/env for the parsing.
//
// A settings struct is any struct whose fields carry `env:"MDS_..."` tags
// (nested structs are walked) and, for documentation, `help:"..."` tags
// (and `docdefault:"..."` where the default is computed at run time). Load
// starts from whatever the struct already holds (the packages' documented
// defaults) and overrides the variables that are set. On top of the
// library's parsing it adds the units the original Python service used:
//
//   - time.Duration accepts a Go duration ("250ms", "6s") or a bare number of
//     seconds ("0.25"); for variables whose name ends in _MS a bare number is
//     milliseconds ("50");
//   - booleans also accept yes/no and on/off;
//   - an empty value counts as unset, except for durations, where it is zero
//     (which the owning package documents, e.g. "empty disables").
//
// A bad value is reported with the name of the variable.
package config
