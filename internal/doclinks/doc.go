// Package doclinks holds a test that every relative link in the README and docs/ resolves.
package doclinks
