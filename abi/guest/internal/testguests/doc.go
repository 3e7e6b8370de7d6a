// Package testguests holds the modules that guest's tests build to wasip1 and run in
// wazero: typed registers every hook through the typed API, raw registers only a raw
// pre hook and links post and stream without handlers.
package testguests
