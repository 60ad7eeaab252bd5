package bench

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// WriteText prints r as a short table for people.
func (r *Result) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	goroutines := "goroutines"
	if r.Concurrency == 1 {
		goroutines = "goroutine"
	}
	fmt.Fprintf(tw, "entries\t%s\tin batches of %s from %s %s\n", group(r.N), group(r.Batch), group(r.Concurrency), goroutines)
	fmt.Fprintf(tw, "throughput\t%s entries/s\t(%.3f s from first append to last ack; open %.1f ms, close %.1f ms)\n",
		group(int(r.EntriesPerSec+0.5)), r.Seconds, r.OpenMs, r.CloseMs)
	fmt.Fprintf(tw, "latency per call\tp50 %s ms\tp99 %s ms, p99.9 %s ms, max %s ms\n", msStr(r.P50Ms), msStr(r.P99Ms), msStr(r.P999Ms), msStr(r.MaxMs))
	if r.FsyncSamples > 0 {
		fmt.Fprintf(tw, "bare write+fsync\t%s ms\t(median of %d appends of %d bytes in the data directory; p50 is %.2f× this; %s ms after the run)\n",
			msStr(r.FsyncMs), r.FsyncSamples, int(r.EntryBytes), r.P50OverFsync, msStr(r.FsyncAfterMs))
	}
	if r.Commits > 0 {
		fmt.Fprintf(tw, "group commits\t%s\t(%.1f entries each; storage p50 %s ms, p99 %s ms, busy %.0f%% of the time; checkpoints: %d, %s ms each)\n",
			group(r.Commits), r.EntriesPerCommit, msStr(r.StoreP50Ms), msStr(r.StoreP99Ms), 100*r.StoreBusy, r.Checkpoints, msStr(r.CheckpointMs))
	}
	fmt.Fprintf(tw, "entry size\t%.0f bytes\t(mean)\n", r.EntryBytes)
	fmt.Fprintf(tw, "on disk\t%.0f bytes/entry\t(%.3f× the entry; apparent %.0f bytes/entry; %s files)\n",
		r.BytesPerEntry, r.Ratio, r.BytesPerEntryApparent, group(r.Files))
	if r.SweepPasses > 0 || r.SweepBytes > 0 || r.SweepError != "" {
		fmt.Fprintf(tw, "self-verification	%.0f MB/s	(%d sweeps completed during the appends, %.1f MB read)\n", r.SweepMBps, r.SweepPasses, float64(r.SweepBytes)/1e6)
		if r.SweepError != "" {
			fmt.Fprintf(tw, "sweep error	%s\n", r.SweepError)
		}
	}
	if r.CPUSeconds > 0 {
		fmt.Fprintf(tw, "cpu\t%.2f s\t(%.2f cores busy; %.0f bytes allocated per entry, %d GCs)\n", r.CPUSeconds, r.CPUCores, r.AllocBytesPerEntry, r.GCCycles)
	}
	kept := "kept"
	if !r.DirKept {
		kept = "temporary, removed"
	}
	fmt.Fprintf(tw, "data directory\t%s (%s)\n", r.Dir, kept)
	return tw.Flush()
}

// msStr prints a latency with three significant digits or more.
func msStr(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// group prints n with thousands separators: 1,000,000.
func group(n int) string {
	s := strconv.Itoa(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
