package main

import (
	"errors"
	"testing"
)

// TestTracingEnabled: tracing is off unless the standard OTEL_* variables
// ask for OTLP traces, and settings it cannot honour are refused.
func TestTracingEnabled(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		want    bool
		wantErr bool
	}{
		{name: "nothing set", want: false},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, want: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, want: true},
		{name: "exporter otlp", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{name: "exporter none wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: false},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, want: false},
		{name: "http protobuf", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, want: true},
		{name: "grpc refused", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantErr: true},
		{name: "traces protocol wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: true},
		{name: "zipkin refused", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tracingEnabled(func(k string) string { return tc.env[k] })
			if tc.wantErr {
				if !errors.Is(err, ErrTracingConfig) {
					t.Fatalf("err %v, want ErrTracingConfig", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("tracingEnabled = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestSetupTracingOff: with no OTEL_* variable there is no provider at all,
// so the edge and consumers skip every tracing step.
func TestSetupTracingOff(t *testing.T) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
	tp, stop, err := setupTracing(t.Context(), "test")
	if err != nil || tp != nil {
		t.Fatalf("setupTracing = %v, %v; want nil, nil", tp, err)
	}
	stop()
}
