package main

import "testing"

// TestDevIgnoresOnlyKafkaSettings: dev mode drops the variables that would
// point it at a real cluster, and names no AWS_ variable the processor does
// not read (AWS_CA_BUNDLE, AWS_PROFILE belong to other tools).
func TestDevIgnoresOnlyKafkaSettings(t *testing.T) {
	for k, want := range map[string]bool{
		"MDS_KAFKA_BROKERS":        true,
		"MDS_KAFKA_SASL_MECHANISM": true,
		"MDS_KAFKA_TLS_ENABLED":    true,
		"AWS_ACCESS_KEY_ID":        true,
		"AWS_SECRET_ACCESS_KEY":    true,
		"AWS_SESSION_TOKEN":        true,
		"AWS_CA_BUNDLE":            false,
		"AWS_PROFILE":              false,
		"AWS_REGION":               false,
		"MDS_DATABASE_URL":         false,
		"MDS_KAFKA_TOPICS":         false,
	} {
		if got := notEmbedded(k); got != want {
			t.Errorf("notEmbedded(%s) = %v, want %v", k, got, want)
		}
	}
}
