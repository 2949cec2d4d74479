module github.com/event-driven-go/kafka-go/consumer

go 1.26.0
