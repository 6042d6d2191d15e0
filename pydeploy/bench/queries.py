"""The SQL the benchmark runs as the app and as the spec: the spec's three queries, pgbench's writer."""

from __future__ import annotations

SPEC_QUERIES: dict[str, str] = {
    "delivery_stats_24h": """-- Delivery rate for last 24 hours
SELECT 
  COUNT(*) as total,
  SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) as successful,
  SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) as failed,
  ROUND(100.0 * SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) / COUNT(*), 2) as delivery_rate
FROM whatsapp_notifications
WHERE created_at > NOW() - INTERVAL '24 hours';""",  # noqa: W291 - verbatim
    "top_errors_24h": """-- Top errors in last 24 hours
SELECT 
  error_type,
  COUNT(*) as count,
  MAX(created_at) as last_occurrence
FROM whatsapp_error_logs
WHERE created_at > NOW() - INTERVAL '24 hours'
GROUP BY error_type
ORDER BY count DESC
LIMIT 10;""",  # noqa: W291 - verbatim
    "active_sessions": """-- Check active sessions
SELECT 
  session_id,
  phone_number,
  is_active,
  updated_at,
  EXTRACT(EPOCH FROM (NOW() - updated_at)) / 3600 as hours_since_update
FROM whatsapp_sessions
WHERE is_active = true;""",  # noqa: W291 - verbatim
}


WRITER_SCRIPT = "\n".join([
    r"\set ph random(10000000, 99999999)",
    "insert into public.whatsapp_notifications (order_id, phone_number, template_name, message) "
    "values ('BENCH-' || :ph, '+55 11 9' || :ph, 'order_confirmed', "
    "'Hello! Your order ORD-' || :ph || ' is confirmed.') returning id \\gset",
    "update public.whatsapp_notifications set status = 'processing', attempts = 1, "
    "processing_started_at = now(), updated_at = now() where id = ':id';",
    "update public.whatsapp_notifications set status = 'sent', sent_at = now(), updated_at = now() "
    "where id = ':id';",
    "",
])


# Read receipts arriving for messages sent 1 to 6 days ago: the late changes the monitoring's
# triggers log (bench_receipt_ids holds ids of such rows, made by the writes stage).
RECEIPT_SCRIPT = "\n".join([
    r"\set k random(1, 50000)",
    "update public.whatsapp_notifications set status = 'read', read_at = now(), updated_at = now() "
    "where id = (select r.id from public.bench_receipt_ids as r where r.k = :k);",
    "",
])
