module github.com/event-driven-go/kafka-go/e2e

go 1.26.0
