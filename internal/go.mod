module github.com/event-driven-go/kafka-go/internal

go 1.26.0

require gopkg.in/yaml.v2 v2.4.0
