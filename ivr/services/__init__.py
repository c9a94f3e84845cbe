"""Operations of the IVR, one module per concern.

- `calls`: one function per webhook (answer, step, wait, status): lock the `CallLeg`, replay retries, run
  the flow (`ivr.flow`) and store the TwiML answered.
- `cases`: turn what a call collected into a triage case (`triage.services`), and react to the call ending.
- `patients`: caller-ID lookup in the EHR during a call, and the later retry for "EHR context pending" cases.
- `risk`: after enqueue, the chart-based risk modifiers (EHR read, then `triage.services.case_apply_risk`).
- `messages`: the SMS outbox (`ivr.OutboundMessage`): record, send, sweep.
"""
