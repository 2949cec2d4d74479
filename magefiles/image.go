package main

import (
	"fmt"

	"github.com/event-driven-go/kafka-go/internal/images"
	"github.com/magefile/mage/mg"
)

// Image builds container images from Debian packages, Maven artifacts and Go
// modules alone, for machines and networks that reach no container registry.
//
// Each target prints the tags it built on stdout, one a line, and everything
// else on stderr, so a script can capture the tags:
//
//	KAFKA_IMAGE=$(go tool mage image:kafka)
//
// Images carry a hash of their inputs as a label; a target whose image is
// current skips the build. docs/offline.md describes each image.
type Image mg.Namespace

// builder builds the offline images of this repository.
var builder = images.Builder{Repo: repo}

// Kafka builds the offline Kafka image, a drop-in for apache/kafka.
//
// The tag is KAFKA_OFFLINE_IMAGE, by default kafka-offline:<KAFKA_VERSION>.
// Needs Docker, Maven and mmdebstrap (Debian: apt-get install docker.io maven
// mmdebstrap). up, demo and test use it by themselves where apache/kafka
// cannot be pulled.
func (Image) Kafka() error {
	mg.Deps(needDocker)
	tag, err := builder.Kafka()
	if err == nil {
		fmt.Println(tag)
	}
	return err
}

// Apps builds the producer, consumer and topics images offline.
//
// They are built on local Debian bases from their Dockerfiles; topics is
// the compose app profile's one-shot service that creates the topics.
//
// It prints their tags in that order: PRODUCER_OFFLINE_IMAGE,
// CONSUMER_OFFLINE_IMAGE and TOPICS_OFFLINE_IMAGE, by default
// producer-offline:latest, consumer-offline:latest and topics-offline:latest.
// The Go toolchain in the build base is the one running Mage; modules are
// vendored on this machine, so the build containers need no network.
func (Image) Apps() error {
	mg.Deps(needDocker)
	tags, err := builder.Apps()
	for _, tag := range tags {
		fmt.Println(tag)
	}
	return err
}

// Prometheus builds the offline Prometheus image from Debian's package.
//
// The tag is PROMETHEUS_OFFLINE_IMAGE, by default prometheus-offline:latest:
// a stand-in for prom/prometheus, with the same entrypoint, flags and port.
func (Image) Prometheus() error {
	mg.Deps(needDocker)
	tag, err := builder.Prometheus()
	if err == nil {
		fmt.Println(tag)
	}
	return err
}

// All builds the offline Kafka, service and Prometheus images.
func (Image) All() {
	mg.SerialDeps(Image.Kafka, Image.Apps, Image.Prometheus)
}
