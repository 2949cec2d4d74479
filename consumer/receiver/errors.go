package receiver

import (
	"errors"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// codeNames are librdkafka's names of the error codes that stop the
// consumer, so that a log line names what the Kafka documentation names.
var codeNames = map[kafka.ErrorCode]string{
	kafka.ErrTopicAuthorizationFailed:   "TOPIC_AUTHORIZATION_FAILED",
	kafka.ErrClusterAuthorizationFailed: "CLUSTER_AUTHORIZATION_FAILED",
	kafka.ErrPolicyViolation:            "POLICY_VIOLATION",
	kafka.ErrTopicException:             "TOPIC_EXCEPTION",
	kafka.ErrMsgSizeTooLarge:            "MSG_SIZE_TOO_LARGE",
	kafka.ErrRecordListTooLarge:         "RECORD_LIST_TOO_LARGE",
	kafka.ErrInvalidRecord:              "INVALID_RECORD",
	kafka.ErrUnknownTopicOrPart:         "UNKNOWN_TOPIC_OR_PART",
	kafka.ErrUnknownTopic:               "_UNKNOWN_TOPIC",
	kafka.ErrUnknownPartition:           "_UNKNOWN_PARTITION",
	kafka.ErrInvalidConfig:              "INVALID_CONFIG",
	kafka.ErrInvalidReplicationFactor:   "INVALID_REPLICATION_FACTOR",
	kafka.ErrInvalidPartitions:          "INVALID_PARTITIONS",
	kafka.ErrFatal:                      "_FATAL",
}

func codeName(c kafka.ErrorCode) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("error code %d", int(c))
}

// permanent reports whether a dead-letter write failed in a way that only
// a person can fix: retrying it would stop the partition for good, in
// silence. Everything else (timeouts, a broker away, a full queue) passes.
// A topic that disappeared is not re-created behind the operator's back.
func permanent(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr.Code() {
	case kafka.ErrTopicAuthorizationFailed, kafka.ErrClusterAuthorizationFailed, kafka.ErrPolicyViolation, kafka.ErrTopicException,
		kafka.ErrMsgSizeTooLarge, kafka.ErrRecordListTooLarge, kafka.ErrInvalidRecord,
		kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic, kafka.ErrUnknownPartition, kafka.ErrFatal:
		return true
	}
	return kerr.IsFatal()
}
