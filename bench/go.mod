module github.com/bucketgate/bucketgate/bench

go 1.26.8

replace github.com/bucketgate/bucketgate => ../

require (
	github.com/bucketgate/bucketgate v0.0.0-00010101000000-000000000000
	github.com/sethvargo/go-limiter v0.7.1
	golang.org/x/time v0.16.0
)
