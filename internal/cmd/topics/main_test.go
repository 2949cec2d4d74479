package main

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

func TestRun(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	servers := strings.Join(fake.ListenAddrs(), ",")
	for _, tt := range []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stdout []string
		stderr string
	}{
		{name: "creates both", args: []string{"--bootstrap-servers", servers}, code: 0,
			stdout: []string{"created topic timestamp\n", "created topic timestamp.dlq (max.message.bytes 1050636", "Topics ready: timestamp, timestamp.dlq\n"}},
		{name: "again: nothing to do", env: map[string]string{"KAFKA_BOOTSTRAP_SERVERS": servers}, code: 0,
			stdout: []string{"Topics ready: timestamp, timestamp.dlq\n"}},
		{name: "a dead-letter topic of its own name", args: []string{"--bootstrap-servers", servers, "--topic", "ticks", "--dlq-topic", "bad-ticks"}, code: 0,
			stdout: []string{"created topic bad-ticks", "Topics ready: ticks, bad-ticks\n"}},
		{name: "bad partitions", env: map[string]string{"KAFKA_PARTITIONS": "-1"}, code: 2, stderr: `topics: invalid partitions "-1"`},
		{name: "refused", args: []string{"--bootstrap-servers", servers, "--topic", "other", "--replication-factor", "3"}, code: 1,
			stderr: "topics: Kafka at " + servers + ": create topic other: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(tt.args, func(k string) string { return tt.env[k] }, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			if !strings.HasPrefix(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q, want it to start %q", stderr.String(), tt.stderr)
			}
		})
	}
}
