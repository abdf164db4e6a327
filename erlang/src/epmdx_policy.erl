%% @doc The built-in transport selection policy, the same as the Rust node's
%% RulePolicy (crates/erldist/src/policy.rs):
%%
%% 1. explicit rules, first match wins: `{node, Glob, Transports}' (a
%%    `*'-only glob on the full peer node name) or `{cidr, "addr/len",
%%    Transports}' (any of the peer's addresses inside); an empty list
%%    refuses the peer;
%% 2. otherwise by locality of the peer's addresses: one of this host's own
%%    addresses or loopback -> `same_host' (default [uds, inet_tcp,
%%    inet6_tcp]); on a network one of this host's non-loopback interfaces
%%    is on -> `same_subnet' (default [inet_tcp, inet6_tcp]); anything else
%%    -> `other' (default [inet_tls, inet6_tls]).
%%
%% The allowed list is walked in order and every offer of each allowed
%% transport is taken, so the result is the offers in preference order; an
%% empty result is a refusal (a remote peer offering only TCP is refused,
%% never downgraded).
%%
%% Configuration: `-kernel epmdx_policy Config', Config a proplist (or map)
%% with the keys rules, same_host, same_subnet and other, e.g.
%% `[{rules, [{node, "backup*@*", [inet_tls]}, {cidr, "192.168.5.0/24", []}]},
%%   {same_subnet, [inet_tls]}]'. A malformed setting (an unknown key or
%% transport, a bad rule or CIDR) stops the node at start with a message
%% naming it (epmdx_config); it is never quietly ignored.
-module(epmdx_policy).

-export([config/0, from_config/1, parse/1, select/4, allowed/3,
         local_networks/0, locality/2, parse_cidr/1, cidr_contains/2, glob/2]).

-type cidr() :: {inet:ip_address(), 0..128}.
-type matcher() :: {node, string()} | {cidr, cidr()}.
-type policy() :: #{rules := [{matcher(), [epmdx_proto:proto()]}],
                    same_host := [epmdx_proto:proto()],
                    same_subnet := [epmdx_proto:proto()],
                    other := [epmdx_proto:proto()]}.
-export_type([policy/0, cidr/0]).

%% The policy from `-kernel epmdx_policy': {ok, Policy}, or {error,
%% Message} for a malformed setting (epmdx_config stops the node at start
%% for it; should the setting change later, every connection is refused).
-spec config() -> {ok, policy()} | {error, string()}.
config() ->
    parse(application:get_env(kernel, epmdx_policy, [])).

%% A well-formed configuration's policy; raises for a malformed one.
-spec from_config(list() | map()) -> policy().
from_config(C) ->
    case parse(C) of
        {ok, P} -> P;
        {error, Msg} -> error({bad_epmdx_policy, Msg})
    end.

-define(KEYS, [rules, same_host, same_subnet, other]).

%% Every key known and given once, every transport known, every rule
%% well formed: a typo must not quietly turn a TLS-only rule into TCP.
-spec parse(term()) -> {ok, policy()} | {error, string()}.
parse(M) when is_map(M) ->
    parse(maps:to_list(M));
parse(L) when is_list(L) ->
    case [E || E <- L, not (is_tuple(E) andalso tuple_size(E) =:= 2)] of
        [Bad | _] ->
            err("expected {Key, Value} entries, got ~0tp", [Bad]);
        [] ->
            Keys = [K || {K, _} <- L],
            case [K || K <- Keys, not lists:member(K, ?KEYS)] of
                [Unknown | _] ->
                    err("unknown key ~0tp (known: ~w)", [Unknown, ?KEYS]);
                [] when length(Keys) =/= length(L) ->
                    err("bad entry", []);
                [] ->
                    case Keys -- lists:usort(Keys) of
                        [Dup | _] -> err("~p given more than once", [Dup]);
                        [] -> parse_keys(L)
                    end
            end
    end;
parse(Other) ->
    err("expected a list (or map) with the keys ~w, got ~0tp", [?KEYS, Other]).

parse_keys(L) ->
    Get = fun(K, Def) ->
                  case lists:keyfind(K, 1, L) of
                      {K, V} -> protos(atom_to_list(K), V);
                      false -> {ok, Def}
                  end
          end,
    Rules = case lists:keyfind(rules, 1, L) of
                {rules, R} -> rules(R);
                false -> {ok, []}
            end,
    case {Rules, Get(same_host, [uds, inet_tcp, inet6_tcp]),
          Get(same_subnet, [inet_tcp, inet6_tcp]), Get(other, [inet_tls, inet6_tls])} of
        {{ok, Rs}, {ok, H}, {ok, S}, {ok, O}} ->
            {ok, #{rules => Rs, same_host => H, same_subnet => S, other => O}};
        Results ->
            hd([E || {error, _} = E <- tuple_to_list(Results)])
    end.

rules(Rules) when is_list(Rules) ->
    rules(Rules, 1, []);
rules(Other) ->
    err("rules: expected a list, got ~0tp", [Other]).

rules([], _, Acc) ->
    {ok, lists:reverse(Acc)};
rules([R | Rest], N, Acc) ->
    case rule(R, N) of
        {ok, Rule} -> rules(Rest, N + 1, [Rule | Acc]);
        E -> E
    end.

rule({node, Glob, Ts} = R, N) when is_list(Glob); is_binary(Glob); is_atom(Glob) ->
    case io_lib:printable_unicode_list(str(Glob)) of
        true -> with_protos({node, str(Glob)}, Ts, R, N);
        false -> err("rule ~w ~0tp: the node glob must be a string", [N, R])
    end;
rule({cidr, Net, Ts} = R, N) when is_list(Net); is_binary(Net); is_atom(Net) ->
    case parse_cidr(str(Net)) of
        {ok, C} -> with_protos({cidr, C}, Ts, R, N);
        error -> err("rule ~w ~0tp: bad CIDR ~0tp (expected \"addr/len\")", [N, R, Net])
    end;
rule(Other, N) ->
    err("rule ~w ~0tp: expected {node, Glob, Transports} or {cidr, \"addr/len\", "
        "Transports}", [N, Other]).

with_protos(Matcher, Ts, R, N) ->
    case protos(lists:flatten(io_lib:format("rule ~w ~0tp", [N, R])), Ts) of
        {ok, L} -> {ok, {Matcher, L}};
        E -> E
    end.

protos(What, L) when is_list(L) ->
    Known = epmdx_proto:known_protos(),
    case [P || P <- L, not lists:member(P, Known)] of
        [] -> {ok, L};
        [Bad | _] -> err("~ts: unknown transport ~0tp (known: ~w)", [What, Bad, Known])
    end;
protos(What, Other) ->
    err("~ts: expected a list of transports, got ~0tp", [What, Other]).

err(F, A) -> {error, lists:flatten(io_lib:format(F, A))}.

%% ------------------------------------------------------------------

%% Peer = #{node := string(), addrs := [inet:ip_address()]}; Offers are
%% maps with at least `proto'. Returns the offers in preference order, or a
%% refusal with its reason.
-spec select(policy(), map(), [map()], [cidr()]) -> {ok, [map()]} | {refuse, string()}.
select(Policy, Peer, Offers, Nets) ->
    {Allowed, Why} = allowed(Policy, Peer, Nets),
    case [O || P <- Allowed, #{proto := OP} = O <- Offers, OP =:= P] of
        [] ->
            Offered = [case O of
                           #{legacy := true} -> atom_to_list(P) ++ " (legacy)";
                           _ -> atom_to_list(P)
                       end || #{proto := P} = O <- Offers],
            {refuse, lists:flatten(
                       io_lib:format("~ts: policy allows [~ts], peer offers [~ts]",
                                     [Why, join([atom_to_list(A) || A <- Allowed]),
                                      join(Offered)]))};
        Order ->
            {ok, Order}
    end.

%% The transports allowed for Peer, in order, and why.
-spec allowed(policy(), map(), [cidr()]) -> {[epmdx_proto:proto()], string()}.
allowed(#{rules := Rules} = Policy, #{node := Node, addrs := Addrs}, Nets) ->
    Hit = fun({node, G}) -> glob(G, Node);
             ({cidr, C}) -> lists:any(fun(A) -> cidr_contains(C, A) end, Addrs)
          end,
    case [{M, L} || {M, L} <- Rules, Hit(M)] of
        [{{node, G}, L} | _] ->
            {L, lists:flatten(io_lib:format("rule node = ~tp", [G]))};
        [{{cidr, {A, Len}}, L} | _] ->
            {L, lists:flatten(io_lib:format("rule cidr = ~s/~w", [inet:ntoa(A), Len]))};
        [] ->
            case locality(Addrs, Nets) of
                same_host -> {maps:get(same_host, Policy), "same host"};
                same_subnet -> {maps:get(same_subnet, Policy), "same subnet"};
                other -> {maps:get(other, Policy), "other network"}
            end
    end.

%% ------------------------------------------------------------------
%% Networks

%% This host's interface addresses with their prefix lengths (IPv4 and
%% IPv6), from inet:getifaddrs/0.
-spec local_networks() -> [cidr()].
local_networks() ->
    case inet:getifaddrs() of
        {ok, Ifs} -> lists:append([pairs(Opts) || {_, Opts} <- Ifs]);
        _ -> []
    end.

pairs([{addr, A}, {netmask, M} | Rest]) when tuple_size(A) =:= tuple_size(M) ->
    [{A, prefix_len(M)} | pairs(Rest)];
pairs([_ | Rest]) -> pairs(Rest);
pairs([]) -> [].

prefix_len(Mask) ->
    lists:sum([popcount(X) || X <- tuple_to_list(Mask)]).

popcount(0) -> 0;
popcount(X) -> (X band 1) + popcount(X bsr 1).

-spec locality([inet:ip_address()], [cidr()]) -> same_host | same_subnet | other.
locality(Addrs, Nets) ->
    Own = fun(A) -> is_loopback(A) orelse lists:any(fun({N, _}) -> N =:= A end, Nets) end,
    Near = fun(A) ->
                   lists:any(fun({N, _} = C) ->
                                     not is_loopback(N) andalso cidr_contains(C, A)
                             end, Nets)
           end,
    case lists:any(Own, Addrs) of
        true -> same_host;
        false ->
            case lists:any(Near, Addrs) of
                true -> same_subnet;
                false -> other
            end
    end.

is_loopback({127, _, _, _}) -> true;
is_loopback({0, 0, 0, 0, 0, 0, 0, 1}) -> true;
is_loopback(_) -> false.

-spec parse_cidr(string()) -> {ok, cidr()} | error.
parse_cidr(S) ->
    {A, P} = case string:split(S, "/") of
                 [Addr, Len] -> {Addr, Len};
                 [Addr] -> {Addr, ""}
             end,
    case inet:parse_strict_address(A) of
        {ok, Ip} ->
            Max = case tuple_size(Ip) of
                      4 -> 32;
                      8 -> 128
                  end,
            case P of
                "" -> {ok, {Ip, Max}};
                _ ->
                    try list_to_integer(P) of
                        N when N >= 0, N =< Max -> {ok, {Ip, N}};
                        _ -> error
                    catch _:_ -> error
                    end
            end;
        _ ->
            error
    end.

-spec cidr_contains(cidr(), inet:ip_address()) -> boolean().
cidr_contains({Net, Len}, Ip) when tuple_size(Net) =:= tuple_size(Ip) ->
    Bits = bits_per(Net),
    Total = Bits * tuple_size(Net),
    Shift = Total - min(Len, Total),
    (to_int(Net, Bits) bsr Shift) =:= (to_int(Ip, Bits) bsr Shift);
cidr_contains(_, _) ->
    false.

bits_per(T) when tuple_size(T) =:= 4 -> 8;
bits_per(T) when tuple_size(T) =:= 8 -> 16.

to_int(T, Bits) ->
    lists:foldl(fun(X, Acc) -> (Acc bsl Bits) bor X end, 0, tuple_to_list(T)).

%% `*'-only glob.
-spec glob(string(), string()) -> boolean().
glob(Pattern, S) ->
    case string:split(Pattern, "*", all) of
        [Exact] -> Exact =:= S;
        [First | Parts] ->
            case lists:prefix(First, S) of
                false -> false;
                true ->
                    Last = lists:last(Parts),
                    Mids = lists:droplast(Parts),
                    Rest0 = lists:nthtail(length(First), S),
                    length(Rest0) >= length(Last)
                        andalso lists:suffix(Last, Rest0)
                        andalso mids(Mids, lists:sublist(Rest0, length(Rest0) - length(Last)))
            end
    end.

mids([], _) -> true;
mids([M | Ms], S) ->
    case string:find(S, M) of
        nomatch -> false;
        Found -> mids(Ms, lists:nthtail(length(M), Found))
    end.

%% ------------------------------------------------------------------

str(A) when is_atom(A) -> atom_to_list(A);
str(B) when is_binary(B) -> unicode:characters_to_list(B);
str(L) when is_list(L) -> L.

join([]) -> "";
join([H | T]) -> lists:flatten([H | [[", ", X] || X <- T]]).
