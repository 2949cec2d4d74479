module github.com/event-driven-go/kafka-go/consumer

go 1.26.0

require github.com/confluentinc/confluent-kafka-go/v2 v2.15.0
