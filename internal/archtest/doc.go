// Package archtest holds the tests of widgetq's package structure: what
// each binary and public package may link. It has no code of its own.
package archtest
