"""The statement splitter agrees with the Supabase CLI's on the shapes our migrations use."""

from __future__ import annotations

from pydeploy.sql_split import split_and_trim


def test_semicolons_inside_quotes_comments_and_bodies_do_not_split() -> None:
    sql = """
-- a comment; with a semicolon
create table t (v text default 'a;b', "odd;name" int);
/* block; /* nested; */ still comment; */
create function f() returns int language plpgsql as $fn$
begin
  return 1; -- inside the body
end
$fn$;
do $$ begin perform 1; end $$;
select 'it''s; fine';
create function g() returns int language sql begin atomic select 1; select 2; end;
"""
    stmts = split_and_trim(sql)
    assert len(stmts) == 5
    assert stmts[0].startswith("-- a comment; with a semicolon\ncreate table t")
    assert stmts[1].startswith("/* block; /* nested; */ still comment; */\ncreate function f()")
    assert stmts[1].endswith("$fn$")
    assert stmts[2] == "do $$ begin perform 1; end $$"
    assert stmts[3] == "select 'it''s; fine'"
    assert stmts[4].endswith("select 2; end")


def test_trailing_whitespace_and_empty_statements_are_dropped() -> None:
    assert split_and_trim("select 1;;\n\n  select 2 ;  \n") == ["select 1", "select 2"]
