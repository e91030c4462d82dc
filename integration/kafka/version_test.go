package kafkatest

import (
	"bytes"
	"testing"
)

// TestPomPinsVersion keeps pom.xml and Version in step.
func TestPomPinsVersion(t *testing.T) {
	if !bytes.Contains(pom, []byte("<kafka.version>"+Version+"</kafka.version>")) {
		t.Fatalf("pom.xml does not pin kafka.version %s", Version)
	}
}
