package store

import "testing"

// TestPostgresDataSyncRetry: data_sync_retry=on, or a server without the
// setting (which retries), is unsafe for production; off is safe. The live
// server's off is checked by TestDurabilityPostgres; on can only be set at
// server start, which the shared test server cannot do.
func TestPostgresDataSyncRetry(t *testing.T) {
	for value, safe := range map[string]bool{"off": true, "on": false, "": false} {
		settings := postgresSettings(map[string]string{"synchronous_commit": "on", "fsync": "on", "full_page_writes": "on", "data_sync_retry": value})
		found := false
		for _, s := range settings {
			if s.Name == "data_sync_retry" {
				found = true
				if s.Safe != safe {
					t.Errorf("data_sync_retry %q: safe = %v, want %v", value, s.Safe, safe)
				}
				if value == "" && s.Value != "absent" {
					t.Errorf("a server without data_sync_retry reported as %q, want absent", s.Value)
				}
			} else if !s.Safe {
				t.Errorf("%+v unsafe", s)
			}
		}
		if !found {
			t.Error("data_sync_retry is not judged")
		}
	}
}
