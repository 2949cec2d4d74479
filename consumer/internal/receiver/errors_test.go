package receiver

import (
	"errors"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{kafka.NewError(kafka.ErrMsgSizeTooLarge, "too large", false), true},
		{kafka.NewError(kafka.ErrTopicAuthorizationFailed, "not allowed", false), true},
		{kafka.NewError(kafka.ErrPolicyViolation, "policy", false), true},
		{kafka.NewError(kafka.ErrTopicException, "invalid topic", false), true},
		{kafka.NewError(kafka.ErrUnknownTopicOrPart, "gone", false), true},
		{kafka.NewError(kafka.ErrOutOfOrderSequenceNumber, "fatal", true), true},
		{kafka.NewError(kafka.ErrMsgTimedOut, "timed out", false), false},
		{kafka.NewError(kafka.ErrAllBrokersDown, "down", false), false},
		{kafka.NewError(kafka.ErrNotEnoughReplicas, "not enough replicas", false), false},
		{errors.New("not a Kafka error"), false},
	}
	for _, tt := range tests {
		if got := permanent(tt.err); got != tt.want {
			t.Errorf("permanent(%v) = %v; want %v", tt.err, got, tt.want)
		}
	}
}
