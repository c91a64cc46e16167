package ref

import "testing"

// The reference operations as go test benchmarks, on all cores like Measure:
//
//	go test -run '^$' -bench . ./bench/ref

func benchmark(b *testing.B, op func(*fixture) error) {
	f, err := newFixture()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(MessageSize)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(f); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkSM2Sign(b *testing.B)    { benchmark(b, (*fixture).sm2Sign) }
func BenchmarkSM2Verify(b *testing.B)  { benchmark(b, (*fixture).sm2Verify) }
func BenchmarkP256Sign(b *testing.B)   { benchmark(b, (*fixture).p256Sign) }
func BenchmarkP256Verify(b *testing.B) { benchmark(b, (*fixture).p256Verify) }
