%% @doc Per-peer transport selection for the epmdx_*_dist wrappers.
%%
%% net_kernel asks each listener's `Mod:select(Node)' in turn (the last
%% `-proto_dist' module first) and sets the connection up with the first
%% that says true. Every wrapper's select/1 calls select/2 here, which
%% makes ONE decision per connection attempt and caches it, so exactly one
%% wrapper accepts the peer:
%%
%% 1. look the peer up at the EPMD on its host: PORT_PLEASE3 with the
%%    transports this node speaks (PORT_PLEASE2 against a stock epmd);
%% 2. build the offers: the peer's transports this node speaks and can
%%    dial (an IPv4 transport needs an IPv4 address for the host, `uds' an
%%    absolute path); a legacy (ALIVE2) registration is offered once per IP
%%    transport this node speaks, plain TCP first, all with `legacy => true'
%%    (EPMD cannot know what a stock node speaks);
%% 3. choose: the user selector `Mod:Fun(LocalTransports, PeerNode, PeerIp,
%%    Offers)' if configured (`-kernel epmdx_selector "{Mod, Fun}"' or
%%    `-epmdx_selector Mod Fun'), else the built-in epmdx_policy. The
%%    selector returns {ok, Offer} (one of Offers, or just its protocol
%%    atom) or `false' (refuse: the connection fails at once, `pang').
%%    A selector that crashes or returns anything else is reported with a
%%    warning and the built-in policy decides.
%%
%% The dist module's setup then calls the EPMD module's address_please/3,
%% which takes the cached decision and returns {ok, IP, Port, Version}.
%%
%% A decision lives until setup takes it, until every wrapper has asked
%% once (a new connection attempt starts over), or for 2 s.
-module(epmdx_select).

-export([select/2, address_please/3, choose/1, init_cache/0,
         connections/0, connection/1]).

-define(TAB, epmdx_select_cache).
-define(TTL_MS, 2000).

-type choice() :: #{proto := epmdx_proto:proto(), port := 0..65535, extra := binary(),
                    legacy := boolean(), ip := inet:ip_address() | {local, binary()},
                    version := non_neg_integer()}.
-type decision() :: {ok, choice()} | {refused, term()} | {error, term()}.

%% Called by epmdx_epmd:init/1: the table lives as long as the EPMD module.
init_cache() ->
    case ets:info(?TAB, name) of
        undefined -> ets:new(?TAB, [named_table, public, set]);
        _ -> ?TAB
    end,
    ok.

%% Whether the wrapper for Proto should set up the connection to Node.
-spec select(epmdx_proto:proto(), node()) -> boolean().
select(Proto, Node) when is_atom(Node) ->
    try
        case split(atom_to_list(Node)) of
            {ok, _, _} ->
                Key = atom_to_list(Node),
                Now = now_ms(),
                D = case lookup_cache(Key) of
                        {T, R, Asked} when Now - T < ?TTL_MS ->
                            case lists:member(Proto, Asked) of
                                false ->
                                    ets:insert(?TAB, {Key, T, R, [Proto | Asked]}),
                                    R;
                                true ->
                                    fresh(Key, Proto)
                            end;
                        _ ->
                            fresh(Key, Proto)
                    end,
                case D of
                    {ok, #{proto := Proto}} -> true;
                    _ -> false
                end;
            error ->
                false
        end
    catch C:E:St ->
            logger:error("epmdx_select: selecting a transport for ~p failed: ~p:~p ~p",
                         [Node, C, E, St]),
            false
    end;
select(_, _) ->
    false.

fresh(Key, Proto) ->
    R = choose(Key),
    catch ets:insert(?TAB, {Key, now_ms(), R, [Proto]}),
    R.

lookup_cache(Key) ->
    try ets:lookup(?TAB, Key) of
        [{_, T, R, Asked}] -> {T, R, Asked};
        [] -> none
    catch error:badarg -> none
    end.

%% The EPMD module callback: the address of the chosen transport.
address_please(Name, Host, Family) ->
    Key = to_list(Name) ++ "@" ++ host_string(Host),
    Now = now_ms(),
    D = case catch ets:take(?TAB, Key) of
            [{_, T, R, _}] when Now - T < ?TTL_MS -> R;
            _ -> choose(Key)
        end,
    case D of
        {ok, #{proto := P, ip := Ip, port := Port, version := V}} ->
            case epmdx_proto:family(P) of
                Family -> {ok, Ip, Port, V};
                _ -> {error, {epmdx_chose, P}}
            end;
        {refused, Why} ->
            {error, {refused, Why}};
        {error, _} = E ->
            E
    end.

%% Looks Node ("name@host") up and decides; logs refusals and failures.
-spec choose(string()) -> decision().
choose(Node) ->
    D = try decide(Node)
        catch C:E:St -> {error, {C, E, St}}
        end,
    case D of
        {ok, _} -> ok;
        {refused, Why} ->
            logger:warning("epmdx_select: not connecting to ~ts: ~ts", [Node, reason(Why)]);
        {error, not_registered} ->
            logger:info("epmdx_select: ~ts is not registered", [Node]);
        {error, Why} ->
            logger:warning("epmdx_select: cannot connect to ~ts: ~tp", [Node, Why])
    end,
    D.

reason(Why) ->
    case io_lib:printable_unicode_list(Why) of
        true -> Why;
        false -> io_lib:format("~tp", [Why])
    end.

decide(Node) ->
    {ok, Name, Host} = split(Node),
    Local = epmdx_epmd:local_transports(),
    Addrs = resolve(Host, Local),
    case [A || A <- Addrs, tuple_size(A) =:= 4] ++ [A || A <- Addrs, tuple_size(A) =:= 8] of
        [] ->
            {error, {cannot_resolve, Host}};
        [EpmdIp | _] ->
            Deadline = now_ms() + net_kernel:connecttime(),
            case epmdx_epmd:lookup(EpmdIp, unicode:characters_to_binary(Name), Local,
                                   Deadline) of
                {ok, _Kind, Rec} ->
                    Offers = [O || O <- offers(Rec, Local), usable(O, Addrs)],
                    case pick(Local, Node, Addrs, Offers) of
                        {ok, O} ->
                            {ok, O#{ip => ip_for(O, Addrs), version => version(Rec)}};
                        Refused ->
                            Refused
                    end;
                not_found ->
                    {error, not_registered};
                {error, _} = E ->
                    E
            end
    end.

offers(#{legacy := true, transports := [#{port := Port, extra := Extra} | _]}, Local) ->
    [#{proto => P, port => Port, extra => Extra, legacy => true}
     || P <- [inet_tcp, inet6_tcp, inet_tls, inet6_tls], lists:member(P, Local)];
offers(#{legacy := true}, _Local) ->
    [];
offers(#{transports := Ts}, Local) ->
    [#{proto => P, port => Port, extra => Extra, legacy => false}
     || #{proto := P, port := Port, extra := Extra} <- Ts, lists:member(P, Local)].

usable(#{proto := uds, extra := <<"/", _/binary>> = Path}, _) ->
    byte_size(Path) =< 106;
usable(#{proto := uds}, _) ->
    false;
usable(#{proto := P}, Addrs) ->
    Size = case epmdx_proto:family(P) of
               inet -> 4;
               inet6 -> 8
           end,
    lists:any(fun(A) -> tuple_size(A) =:= Size end, Addrs).

ip_for(#{proto := uds, extra := Path}, _) ->
    {local, Path};
ip_for(#{proto := P}, Addrs) ->
    Size = case epmdx_proto:family(P) of
               inet -> 4;
               inet6 -> 8
           end,
    hd([A || A <- Addrs, tuple_size(A) =:= Size]).

%% The version to tell the handshake: the highest both sides speak.
version(#{high := High, low := Low}) ->
    Mine = 6,
    if
        Low =< Mine, Mine =< High -> Mine;
        true -> min(High, Mine)
    end.

pick(Local, Node, Addrs, Offers) ->
    case selector() of
        undefined ->
            builtin(Node, Addrs, Offers);
        {M, F} ->
            PeerIp = case Addrs of
                         [A | _] -> A;
                         [] -> undefined
                     end,
            PeerNode = try list_to_existing_atom(Node)
                       catch error:badarg -> Node
                       end,
            try M:F(Local, PeerNode, PeerIp, Offers) of
                false ->
                    {refused, lists:flatten(io_lib:format("selector ~p:~p returned false",
                                                          [M, F]))};
                {ok, O} when is_map(O) ->
                    case lists:member(O, Offers) of
                        true -> {ok, O};
                        false -> fallback(M, F, {returned, {ok, O}}, Node, Addrs, Offers)
                    end;
                {ok, P} when is_atom(P) ->
                    case [O || #{proto := OP} = O <- Offers, OP =:= P] of
                        [O | _] -> {ok, O};
                        [] -> fallback(M, F, {returned, {ok, P}}, Node, Addrs, Offers)
                    end;
                Other ->
                    fallback(M, F, {returned, Other}, Node, Addrs, Offers)
            catch C:E ->
                    fallback(M, F, {crashed, {C, E}}, Node, Addrs, Offers)
            end
    end.

fallback(M, F, What, Node, Addrs, Offers) ->
    logger:warning("epmdx_select: selector ~p:~p ~tp for ~ts; "
                   "falling back to the built-in policy", [M, F, What, Node]),
    builtin(Node, Addrs, Offers).

builtin(Node, Addrs, Offers) ->
    Policy = epmdx_policy:config(),
    case epmdx_policy:select(Policy, #{node => Node, addrs => Addrs}, Offers,
                             epmdx_policy:local_networks()) of
        {ok, [O | _]} -> {ok, O};
        {refuse, Why} -> {refused, Why}
    end.

%% The user's selector: `-kernel epmdx_selector "{Mod, Fun}"', or
%% `-epmdx_selector Mod Fun'.
selector() ->
    case application:get_env(kernel, epmdx_selector) of
        {ok, {M, F}} when is_atom(M), is_atom(F) ->
            {M, F};
        {ok, Other} ->
            logger:warning("epmdx_select: ignoring epmdx_selector ~p (expected {Mod, Fun})",
                           [Other]),
            undefined;
        undefined ->
            case init:get_argument(epmdx_selector) of
                {ok, [[M, F] | _]} -> {list_to_atom(M), list_to_atom(F)};
                _ -> undefined
            end
    end.

%% ------------------------------------------------------------------
%% Which transport each live connection uses, read from the connection
%% itself (erlang:system_info(dist_ctrl)): a port controller is a socket
%% (its own address family tells TCP/IPv4, TCP/IPv6 or a Unix socket), a
%% process controller is TLS (inet_tls_dist).

-spec connections() -> [{node(), epmdx_proto:proto() | unknown}].
connections() ->
    [{N, maps:get(transport, connection(N, C))}
     || {N, C} <- erlang:system_info(dist_ctrl)].

%% #{transport, local, peer} for the connection to Node, or `undefined'.
connection(Node) ->
    case lists:keyfind(Node, 1, erlang:system_info(dist_ctrl)) of
        {Node, C} -> connection(Node, C);
        false -> undefined
    end.

connection(_Node, C) when is_port(C) ->
    Local = case inet:sockname(C) of
                {ok, L} -> L;
                _ -> undefined
            end,
    Peer = case inet:peername(C) of
               {ok, P} -> P;
               _ -> undefined
           end,
    T = case Local of
            {local, _} -> uds;
            {{_, _, _, _}, _} -> inet_tcp;
            {{_, _, _, _, _, _, _, _}, _} -> inet6_tcp;
            _ -> unknown
        end,
    #{transport => T, local => Local, peer => Peer};
connection(Node, C) when is_pid(C) ->
    Addr = case net_kernel:node_info(Node, address) of
               {ok, A} -> A;
               _ -> undefined
           end,
    %% #net_address{address, host, protocol, family}
    T = case Addr of
            {net_address, {{_, _, _, _}, _}, _, tls, _} -> inet_tls;
            {net_address, {{_, _, _, _, _, _, _, _}, _}, _, tls, _} -> inet6_tls;
            _ -> unknown
        end,
    Peer = case Addr of
               {net_address, P, _, _, _} -> P;
               _ -> undefined
           end,
    #{transport => T, local => undefined, peer => Peer}.

%% ------------------------------------------------------------------

split(Node) ->
    case string:split(Node, "@") of
        [Name, Host] when Name =/= "", Host =/= "" -> {ok, Name, Host};
        _ -> error
    end.

%% The host's addresses in the families this node dials: IPv4 for inet_*
%% (and for uds, to tell where the host is), IPv6 for inet6_*; IPv6 also
%% when there is no IPv4 address. Like stock OTP, which only asks for the
%% family of its dist module: an AAAA query a v4-only node does not need
%% can take seconds where IPv6 names do not resolve.
resolve(Host, Local) ->
    V4 = case [P || P <- Local, epmdx_proto:family(P) =/= inet6] of
             [] -> [];
             _ -> getaddrs(Host, inet)
         end,
    V6 = case V4 =:= [] orelse
             lists:any(fun(P) -> epmdx_proto:family(P) =:= inet6 end, Local) of
             true -> getaddrs(Host, inet6);
             false -> []
         end,
    dedup(V4 ++ V6).

getaddrs(Host, Family) ->
    case inet:getaddrs(Host, Family) of
        {ok, L} -> L;
        _ -> []
    end.

dedup(L) -> dedup(L, []).
dedup([], Acc) -> lists:reverse(Acc);
dedup([H | T], Acc) ->
    case lists:member(H, Acc) of
        true -> dedup(T, Acc);
        false -> dedup(T, [H | Acc])
    end.

host_string(H) when is_tuple(H) -> inet:ntoa(H);
host_string(H) -> to_list(H).

to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(B) when is_binary(B) -> unicode:characters_to_list(B);
to_list(L) when is_list(L) -> L.

now_ms() ->
    erlang:monotonic_time(millisecond).
