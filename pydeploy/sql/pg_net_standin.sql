-- pydeploy's LOCAL STAND-IN for pg_net (https://github.com/supabase/pg_net), used only on the
-- local engine where Debian ships no pg_net. It reproduces pg_net's SQL contract (function
-- signatures and defaults, net.http_request_queue, net._http_response) so that our migrations
-- run unchanged against the real extension; the background worker is pydeploy's Python process
-- (pydeploy/net_worker.py), not a Postgres bgworker. Never part of the migrations.
create schema if not exists net;
comment on schema net is 'pydeploy local stand-in for the pg_net extension (not the real pg_net)';

do $$
begin
  if not exists (
    select 1 from pg_type t join pg_namespace n on n.oid = t.typnamespace
    where n.nspname = 'net' and t.typname = 'http_method'
  ) then
    create domain net.http_method as text
    check (value ilike 'get' or value ilike 'post' or value ilike 'delete');
  end if;
end
$$;

-- Requests waiting for the worker. UNLOGGED, as in pg_net: lost on a crash.
create unlogged table if not exists net.http_request_queue (
  id bigserial,
  method net.http_method not null,
  url text not null,
  headers jsonb,
  body bytea,
  timeout_milliseconds int not null
);

-- Responses written by the worker, deleted after pg_net.ttl (6 hours). UNLOGGED, as in pg_net.
create unlogged table if not exists net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out bool,
  error_msg text,
  created timestamptz not null default now()
);
create index if not exists _http_response_created_idx on net._http_response (created);

create or replace function net._urlencode_string(string varchar)
returns text
language sql
immutable
strict
set search_path = ''
as $$
  select string_agg(
    case
      when ch ~ '[A-Za-z0-9_.~-]' then ch
      else upper(regexp_replace(encode(convert_to(ch, 'UTF8'), 'hex'), '(..)', '%\1', 'g'))
    end, '' order by ord)
  from regexp_split_to_table(string, '') with ordinality as t (ch, ord)
$$;

create or replace function net._encode_url_with_params_array(url text, params_array text[])
returns text
language sql
immutable
strict
set search_path = ''
as $$
  select case
    when cardinality(params_array) = 0 then url
    when position('?' in url) > 0 then url || '&' || array_to_string(params_array, '&')
    else url || '?' || array_to_string(params_array, '&')
  end
$$;

create or replace function net._params_array(params jsonb)
returns text[]
language sql
immutable
set search_path = ''
as $$
  select coalesce(
    array_agg(net._urlencode_string(key) || '=' || net._urlencode_string(value)), '{}'
  )
  from jsonb_each_text(coalesce(params, '{}'::jsonb))
$$;

create or replace function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds int default 5000
)
returns bigint
language plpgsql
volatile
strict
set search_path = ''
as $$
declare
  request_id bigint;
begin
  insert into net.http_request_queue (method, url, headers, timeout_milliseconds)
  values ('GET', net._encode_url_with_params_array(url, net._params_array(params)), headers,
          timeout_milliseconds)
  returning id into request_id;
  perform pg_notify('pydeploy_net', request_id::text);
  return request_id;
end
$$;

create or replace function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds int default 5000
)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  request_id bigint;
  content_type text;
begin
  select header_value into content_type
  from jsonb_each_text(coalesce(headers, '{}'::jsonb)) as r (header_name, header_value)
  where lower(header_name) = 'content-type'
  limit 1;

  if content_type is null then
    headers := coalesce(headers, '{}'::jsonb) || '{"Content-Type": "application/json"}'::jsonb;
  end if;

  if content_type <> 'application/json' then
    raise exception 'Content-Type header must be "application/json"';
  end if;

  if body is null then
    raise exception 'body must not be null';
  end if;

  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values ('POST', net._encode_url_with_params_array(url, net._params_array(params)), headers,
          convert_to(body::text, 'UTF8'), timeout_milliseconds)
  returning id into request_id;
  perform pg_notify('pydeploy_net', request_id::text);
  return request_id;
end
$$;

create or replace function net.http_delete(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds int default 5000
)
returns bigint
language plpgsql
volatile
strict
set search_path = ''
as $$
declare
  request_id bigint;
begin
  insert into net.http_request_queue (method, url, headers, timeout_milliseconds)
  values ('DELETE', net._encode_url_with_params_array(url, net._params_array(params)), headers,
          timeout_milliseconds)
  returning id into request_id;
  perform pg_notify('pydeploy_net', request_id::text);
  return request_id;
end
$$;

grant usage on schema net to postgres, service_role;
grant all on all tables in schema net to postgres, service_role;
grant all on all sequences in schema net to postgres, service_role;
revoke all on function net.http_get(text, jsonb, jsonb, int) from public;
revoke all on function net.http_post(text, jsonb, jsonb, jsonb, int) from public;
revoke all on function net.http_delete(text, jsonb, jsonb, int) from public;
grant execute on function net.http_get(text, jsonb, jsonb, int) to postgres, service_role;
grant execute on function net.http_post(text, jsonb, jsonb, jsonb, int) to postgres, service_role;
grant execute on function net.http_delete(text, jsonb, jsonb, int) to postgres, service_role;
