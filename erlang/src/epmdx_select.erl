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
%%    for a member of the etcd cluster (epmdx_cluster), its record's
%%    transports and addresses instead, without asking any EPMD;
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
%% which takes the decision and returns {ok, IP, Port, Version}.
%%
%% One decision per attempt, however the calls interleave. OTP 25-27 ask
%% the wrappers one after another from net_kernel; newer releases may run
%% select/1 of several modules, and of several attempts, at the same time.
%% So every select/1 and address_please/3 goes through one process (this
%% module's gen_server, started by epmdx_epmd): the first call for a peer
%% starts one decision in a worker process, calls that arrive while it runs
%% wait for that same decision, and the answer true goes to the wrapper of
%% the chosen transport only. The server never waits on the network itself.
%% A decision lives until setup takes it, until a wrapper that already
%% asked asks again (a new connection attempt), or for 2 s.
-module(epmdx_select).
-behaviour(gen_server).

-export([select/2, address_please/3, choose/1, init_cache/0,
         connections/0, connection/1, transport_of/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(SERVER, ?MODULE).
-define(TTL_MS, 2000).
%% Added to net_kernel:connecttime() for a caller's wait on the server.
-define(CALL_MARGIN_MS, 5000).

-type choice() :: #{proto := epmdx_proto:proto(), port := 0..65535, extra := binary(),
                    legacy := boolean(), ip := inet:ip_address() | {local, binary()},
                    version := non_neg_integer()}.
-type decision() :: {ok, choice()} | {refused, term()} | {error, term()}.

%% Called by epmdx_epmd:init/1: the decision server, linked to the EPMD
%% module's process, so it lives as long as that does.
init_cache() ->
    case whereis(?SERVER) of
        undefined ->
            case gen_server:start_link({local, ?SERVER}, ?MODULE, [], []) of
                {ok, _} -> ok;
                {error, {already_started, _}} -> ok
            end;
        _ ->
            ok
    end.

%% Whether the wrapper for Proto should set up the connection to Node.
-spec select(epmdx_proto:proto(), node()) -> boolean().
select(Proto, Node) when is_atom(Node) ->
    Key = atom_to_list(Node),
    case split(Key) of
        {ok, _, _} ->
            case server_call({select, Proto, Key}) of
                {ok, Answer} when is_boolean(Answer) ->
                    Answer;
                noproc ->
                    %% No EPMD module process (the wrapper used without
                    %% epmdx_epmd): decide here, without a cache.
                    chosen(choose(Key), Proto);
                {error, Why} ->
                    logger:error("epmdx_select: selecting a transport for ~p failed: ~p",
                                 [Node, Why]),
                    false
            end;
        error ->
            false
    end;
select(_, _) ->
    false.

chosen({ok, #{proto := Proto}}, Proto) -> true;
chosen(_, _) -> false.

%% The EPMD module callback: the address of the chosen transport.
address_please(Name, Host, Family) ->
    Key = to_list(Name) ++ "@" ++ host_string(Host),
    D = case server_call({take, Key}) of
            {ok, {decided, R}} -> R;
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

server_call(Req) ->
    try gen_server:call(?SERVER, Req, net_kernel:connecttime() + ?CALL_MARGIN_MS) of
        Reply -> {ok, Reply}
    catch
        exit:{noproc, _} -> noproc;
        exit:Why -> {error, Why}
    end.

%% ------------------------------------------------------------------
%% The decision server. State: #{entries := #{Key => Entry}, workers :=
%% #{MonitorRef => Key}}, Entry one of
%%   {deciding, Ref, Waiters, Takers}: a worker is deciding; Waiters are
%%     {From, Proto} of select/2 calls, Takers From of address_please/3;
%%   {decided, Time, Decision, Asked}: the protocols already answered.

init([]) ->
    {ok, #{entries => #{}, workers => #{}}}.

handle_call({select, Proto, Key}, From, S0) ->
    #{entries := Es} = S = prune(S0),
    case maps:find(Key, Es) of
        {ok, {decided, T, R, Asked}} ->
            case lists:member(Proto, Asked) of
                false ->
                    {reply, chosen(R, Proto),
                     S#{entries := Es#{Key := {decided, T, R, [Proto | Asked]}}}};
                true ->
                    %% This wrapper was asked already: a new attempt.
                    {noreply, start_decision(Key, [{From, Proto}], S)}
            end;
        {ok, {deciding, Ref, Waiters, Takers}} ->
            {noreply, S#{entries := Es#{Key := {deciding, Ref, [{From, Proto} | Waiters],
                                                Takers}}}};
        error ->
            {noreply, start_decision(Key, [{From, Proto}], S)}
    end;
handle_call({take, Key}, From, S0) ->
    #{entries := Es} = S = prune(S0),
    case maps:find(Key, Es) of
        {ok, {decided, _, R, _}} ->
            {reply, {decided, R}, S#{entries := maps:remove(Key, Es)}};
        {ok, {deciding, Ref, Waiters, Takers}} ->
            {noreply, S#{entries := Es#{Key := {deciding, Ref, Waiters, [From | Takers]}}}};
        error ->
            {reply, none, S}
    end;
handle_call(_, _From, S) ->
    {reply, {error, badarg}, S}.

handle_cast(_, S) ->
    {noreply, S}.

%% A worker ends with its decision as the exit reason.
handle_info({'DOWN', Ref, process, _, Reason}, #{workers := Ws} = S) ->
    case maps:take(Ref, Ws) of
        {Key, Ws1} ->
            R = case Reason of
                    {epmdx_decision, D} -> D;
                    Other -> {error, {decision_failed, Other}}
                end,
            {noreply, decided(Key, Ref, R, S#{workers := Ws1})};
        error ->
            {noreply, S}
    end;
handle_info(_, S) ->
    {noreply, S}.

start_decision(Key, Waiters, #{entries := Es, workers := Ws} = S) ->
    {_, Ref} = spawn_monitor(fun() -> exit({epmdx_decision, choose(Key)}) end),
    S#{entries := Es#{Key => {deciding, Ref, Waiters, []}}, workers := Ws#{Ref => Key}}.

decided(Key, Ref, R, #{entries := Es} = S) ->
    case maps:find(Key, Es) of
        {ok, {deciding, Ref, Waiters, Takers}} ->
            [gen_server:reply(From, chosen(R, Proto)) || {From, Proto} <- Waiters],
            case Takers of
                [] ->
                    Asked = dedup([P || {_, P} <- Waiters]),
                    S#{entries := Es#{Key := {decided, now_ms(), R, Asked}}};
                _ ->
                    [gen_server:reply(From, {decided, R}) || From <- Takers],
                    S#{entries := maps:remove(Key, Es)}
            end;
        _ ->
            S
    end.

%% Decisions older than TTL_MS are dropped (bounds the table too).
prune(#{entries := Es} = S) ->
    Now = now_ms(),
    S#{entries := maps:filter(fun(_, {decided, T, _, _}) -> Now - T < ?TTL_MS;
                                 (_, {deciding, _, _, _}) -> true
                              end, Es)}.

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
    case epmdx_cluster:lookup(Node) of
        {ok, Member} -> decide_member(Node, Host, Local, Member);
        none -> decide_epmd(Node, Name, Host, Local)
    end.

%% A cluster member (epmdx_cluster): its transports and addresses come
%% from its etcd record, so the peer host's EPMD is not asked. A record
%% without addresses falls back to resolving the host. Records carry no
%% version range; every OTP since 23 and erldist speak version 6.
decide_member(Node, Host, Local, #{addresses := As, transports := Ts, legacy := L}) ->
    Addrs = case As of
                [] -> resolve(Host, Local);
                _ -> in_families(As, Local)
            end,
    Rec = #{legacy => L, high => 6, low => 6,
            transports => [#{proto => P, port => Port, extra => <<>>}
                           || #{proto := P, port := Port} <- Ts]},
    case Addrs of
        [] ->
            {error, {no_usable_address, Host}};
        _ ->
            Offers = [O || O <- offers(Rec, Local), usable(O, Addrs)],
            case pick(Local, Node, Addrs, Offers) of
                {ok, O} -> {ok, O#{ip => ip_for(O, Addrs), version => 6}};
                Refused -> Refused
            end
    end.

%% A record's addresses, in the families this node dials (as resolve/2).
in_families(As, Local) ->
    V4 = case [P || P <- Local, epmdx_proto:family(P) =/= inet6] of
             [] -> [];
             _ -> [A || A <- As, tuple_size(A) =:= 4]
         end,
    V6 = case V4 =:= [] orelse
             lists:any(fun(P) -> epmdx_proto:family(P) =:= inet6 end, Local) of
             true -> [A || A <- As, tuple_size(A) =:= 8];
             false -> []
         end,
    V4 ++ V6.

decide_epmd(Node, Name, Host, Local) ->
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
        {bad_setting, Other} ->
            {refused, lists:flatten(io_lib:format("-kernel epmdx_selector: expected "
                                                  "{Module, Function}, got ~tp", [Other]))};
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
    case epmdx_policy:config() of
        {ok, Policy} ->
            case epmdx_policy:select(Policy, #{node => Node, addrs => Addrs}, Offers,
                                     epmdx_policy:local_networks()) of
                {ok, [O | _]} -> {ok, O};
                {refuse, Why} -> {refused, Why}
            end;
        {error, Msg} ->
            %% Checked at start; set to garbage since: refuse, never guess.
            {refused, "-kernel epmdx_policy: " ++ Msg}
    end.

%% The user's selector: `-kernel epmdx_selector "{Mod, Fun}"', or
%% `-epmdx_selector Mod Fun'.
selector() ->
    case application:get_env(kernel, epmdx_selector) of
        {ok, {M, F}} when is_atom(M), is_atom(F) ->
            {M, F};
        {ok, Other} ->
            %% Checked at start (epmdx_config); set to garbage since.
            {bad_setting, Other};
        undefined ->
            case init:get_argument(epmdx_selector) of
                {ok, [[M, F] | _]} -> {list_to_atom(M), list_to_atom(F)};
                _ -> undefined
            end
    end.

%% ------------------------------------------------------------------
%% Which transport each live connection uses, read from the connection
%% itself (erlang:system_info(dist_ctrl)) and the address net_kernel
%% recorded for it (#net_address{address, host, protocol, family}):
%%
%% - a process controller is TLS (OTP's tls_sender);
%% - a port controller is a socket: TCP over IPv4 or IPv6, or a Unix
%%   socket, by its own address, unless the recorded protocol is `tls':
%%   with kTLS, inet_tls_dist hands the plain socket to the emulator after
%%   the handshake and the kernel does the encryption, so a port controller
%%   can be TLS too;
%% - IPv4 or IPv6 TLS by the address, not `family': OTP 25's
%%   inet6_tls_dist records family = inet; later releases record the
%%   dist module's family.

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

connection(Node, C) ->
    Addr = case net_kernel:node_info(Node, address) of
               {ok, A} -> A;
               _ -> undefined
           end,
    Local = case is_port(C) andalso inet:sockname(C) of
                {ok, L} -> L;
                _ -> undefined
            end,
    Peer = case {is_port(C) andalso inet:peername(C), Addr} of
               {{ok, P}, _} -> P;
               {_, {net_address, P, _, _, _}} -> P;
               _ -> undefined
           end,
    Kind = case is_port(C) of
               true -> port;
               false -> process
           end,
    #{transport => transport_of(Kind, Local, Addr), local => Local, peer => Peer}.

%% The pure part of connection/2: the controller's kind, the socket's own
%% address (for a port) and the recorded #net_address.
-spec transport_of(port | process, term(), term()) -> epmdx_proto:proto() | unknown.
transport_of(port, {local, _}, _) -> uds;
transport_of(port, {Ip, _}, {net_address, _, _, tls, _}) -> tls_of(Ip);
transport_of(port, {{_, _, _, _}, _}, _) -> inet_tcp;
transport_of(port, {{_, _, _, _, _, _, _, _}, _}, _) -> inet6_tcp;
transport_of(process, _, {net_address, {Ip, _}, _, tls, _}) -> tls_of(Ip);
transport_of(_, _, _) -> unknown.

tls_of({_, _, _, _}) -> inet_tls;
tls_of({_, _, _, _, _, _, _, _}) -> inet6_tls;
tls_of(_) -> unknown.

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
