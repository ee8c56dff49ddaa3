//go:build !race

package upstash

const raceEnabled = false
