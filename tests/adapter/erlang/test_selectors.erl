%% Selectors for the adapter's failure-path tests (compiled by the tests).
-module(test_selectors).
-export([crash/4, garbage/4, refuse/4, pick_tls/4, not_offered/4, slow_random/4]).

crash(_Local, _Node, _Ip, _Offers) ->
    error(selector_boom).

garbage(_Local, _Node, _Ip, _Offers) ->
    {maybe, tomorrow}.

refuse(_Local, _Node, _Ip, _Offers) ->
    false.

pick_tls(_Local, _Node, _Ip, Offers) ->
    [O | _] = [O || #{proto := inet_tls} = O <- Offers],
    {ok, O}.

not_offered(_Local, _Node, _Ip, _Offers) ->
    {ok, #{proto => inet_tls, port => 1, extra => <<>>, legacy => false}}.

%% Takes a while and answers differently each time: only a decision made
%% once per attempt keeps every wrapper's select/1 consistent.
slow_random(_Local, _Node, _Ip, Offers) ->
    receive after 5 -> ok end,
    {ok, lists:nth(rand:uniform(length(Offers)), Offers)}.
