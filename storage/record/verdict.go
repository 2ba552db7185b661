package record

// Verdicts, as written in Entry.Verdict.
const (
	VerdictAccepted = "accepted"
	VerdictRejected = "rejected"
)
