module github.com/deferred-go/deferred/bench

go 1.25.0

require (
	github.com/deferred-go/deferred v0.0.0-00010101000000-000000000000
	github.com/fanliao/go-promise v0.0.0-20141029170127-1890db352a72
	github.com/samber/mo v1.16.0
	golang.org/x/sync v0.22.0
)

require github.com/smartystreets/goconvey v1.8.1 // indirect

replace github.com/deferred-go/deferred => ../
