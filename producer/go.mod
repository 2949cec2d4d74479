module github.com/event-driven-go/kafka-go/producer

go 1.26.0
