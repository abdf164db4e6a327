%% @doc An EPMD module for stock OTP nodes (`-kernel epmd_module epmdx_epmd` on
%% OTP 27.2 and later, `-epmd_module epmdx_epmd` before; see epmdx_config) that
%% registers every distribution transport of the node with epmdx under one
%% name, over one connection, with the multi-transport extension
%% (docs/protocol.md), and resolves peers through epmdx_select.
%%
%% Registration. net_kernel calls `Mod:listen/2' of each `-proto_dist'
%% module in its own process; each dist module then calls
%% register_node/3 with `Driver = inet_tcp | inet6_tcp' even for TLS. The
%% epmdx_*_dist wrappers therefore run the real listen inside
%% with_transport/2, which leaves the transport's protocol name (and, for
%% `uds', the socket path) in the process dictionary for register_node/3 to
%% read. The first registration sends ALIVE3 on a new connection to the
%% local daemon and returns its 32-bit creation; later ones send a follow-up
%% ALIVE3 on the same connection. When the connection drops, the module
%% re-registers all transports in one ALIVE3 every 2 s until it succeeds.
%%
%% Against a stock epmd (the ALIVE3 is closed without a reply), the first IP
%% transport is registered with ALIVE2, as erl_epmd would, with a warning;
%% the other transports still listen but are not advertised.
%%
%% Lookups (address_please/3) go through epmdx_select, which asks the
%% peer's daemon with PORT_PLEASE3 (PORT_PLEASE2 against a stock one) and
%% applies the selection policy. names/1 and port_please/2,3 keep their
%% stock meaning (legacy NAMES / PORT_PLEASE2, delegated to erl_epmd);
%% names3/0,1 lists every node with all its transports.
-module(epmdx_epmd).
-behaviour(gen_server).

%% EPMD module callbacks.
-export([start_link/0, register_node/2, register_node/3,
         port_please/2, port_please/3, names/0, names/1,
         address_please/3, listen_port_please/2]).
%% Extensions.
-export([names3/0, names3/1, with_transport/2, lookup/4, epmd_port/0,
         registered/0, local_transports/0, proto_of_dist/1]).
%% gen_server.
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-include_lib("kernel/include/dist.hrl").

-define(SERVER, ?MODULE).
-define(HINT, epmdx_transport).
-define(RECONNECT_MS, 2000).
-define(REQ_TIMEOUT, 10000).
-define(CONNECT_TIMEOUT, 5000).
-define(DEFAULT_EPMD_PORT, 4369).

-record(st, {name :: binary() | undefined,
             mode = none :: none | extended | legacy,
             sock :: gen_tcp:socket() | undefined,
             creation = -1 :: integer(),
             %% Registered (extended) or listening (legacy) transports, in
             %% registration order: {Proto, Port, Extra}.
             transports = [] :: [{epmdx_proto:proto(), 0..65535, binary()}],
             %% Legacy mode: the transport registered with ALIVE2.
             legacy :: undefined | epmdx_proto:proto(),
             timer :: reference() | undefined}).

%% ------------------------------------------------------------------
%% EPMD module API

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

register_node(Name, Port) ->
    register_node(Name, Port, inet_tcp).

%% Registers the transport being listened on in this process (see
%% with_transport/2); without a hint, the transport is guessed from
%% `-proto_dist' and Driver.
register_node(Name, Port, Driver) ->
    {Proto, Extra} =
        case get(?HINT) of
            {P, E} -> {P, E};
            undefined -> {guess_proto(Driver), <<>>}
        end,
    gen_server:call(?SERVER, {register, to_bin(Name), Proto, Port, Extra}, infinity).

%% The stock meaning: the legacy default transport of the node (PORT_PLEASE2;
%% epmdx answers with the node's first plain-TCP transport).
port_please(Name, Host) ->
    port_please(Name, Host, infinity).
port_please(Name, Host, Timeout) ->
    erl_epmd:port_please(Name, Host, Timeout).

%% The stock shape, {ok, [{Name, Port}]}, from the legacy NAMES listing.
names() ->
    {ok, Host} = inet:gethostname(),
    names(Host).
names(Host) ->
    erl_epmd:names(Host).

%% {ok, IP, Port, Version} of the transport the policy chose for
%% Name@Host; see epmdx_select.
address_please(Name, Host, Family) ->
    epmdx_select:address_please(Name, Host, Family).

listen_port_please(Name, Host) ->
    erl_epmd:listen_port_please(Name, Host).

%% ------------------------------------------------------------------
%% Extensions

%% Runs Fun (a dist module's listen) with the transport that register_node
%% should record: a protocol atom, or {uds, Path}.
-spec with_transport(epmdx_proto:proto() | {uds, binary()}, fun(() -> T)) -> T.
with_transport(Hint, Fun) ->
    case epmdx_config:epmd_module_check() of
        ok ->
            with_transport_hint(Hint, Fun);
        {error, Msg} ->
            boot_error(Msg),
            {error, {epmdx_bad_setting, Msg}}
    end.

with_transport_hint(Hint, Fun) ->
    Value = case Hint of
                {uds, Path} -> {uds, Path};
                P when is_atom(P) -> {P, <<>>}
            end,
    Old = put(?HINT, Value),
    try
        Fun()
    after
        case Old of
            undefined -> erase(?HINT);
            _ -> put(?HINT, Old)
        end
    end.

%% Every node on this host's daemon with all its transports:
%% {ok, [{Name, [{Port, Proto}]}]}, Proto one of inet_tcp, inet6_tcp,
%% inet_tls, inet6_tls, uds, or `legacy' for an ALIVE2 registration (a
%% stock node; EPMD cannot know what it speaks). Unknown protocol names are
%% left out. Against a stock epmd, every node is listed as legacy.
names3() ->
    {ok, Host} = inet:gethostname(),
    names3(Host).
names3(Host) ->
    case epmd_addr(Host) of
        {ok, Ip} ->
            Deadline = deadline(?REQ_TIMEOUT),
            Port = epmd_port(),
            case request(Ip, epmdx_proto:names3(), 4, Deadline) of
                {ok, Bin} ->
                    case epmdx_proto:names3_reply(Bin) of
                        {ok, Port, Recs} ->
                            {ok, [{unicode:characters_to_list(N),
                                   [{P, Pr} || #{proto := Pr, port := P} <- Ts,
                                               Pr =/= unknown]}
                                  || #{name := N, transports := Ts} <- Recs]};
                        {ok, _OtherPort, _} ->
                            {error, address};
                        {error, _} = E ->
                            E
                    end;
                closed ->
                    case erl_epmd:names(Host) of
                        {ok, L} -> {ok, [{N, [{P, legacy}]} || {N, P} <- L]};
                        E -> E
                    end;
                {error, _} = E ->
                    E
            end;
        E ->
            E
    end.

%% Looks Name up at the daemon on EpmdIp: PORT_PLEASE3 with Protos (most
%% preferred first), or PORT_PLEASE2 when the daemon closes without a reply.
-spec lookup(inet:ip_address(), binary(), [epmdx_proto:proto()], integer()) ->
          {ok, extended | legacy, epmdx_proto:record()} | not_found | {error, term()}.
lookup(EpmdIp, Name, Protos, Deadline) ->
    case request(EpmdIp, epmdx_proto:port_please3(Name, Protos), 2, Deadline) of
        {ok, Bin} ->
            case epmdx_proto:port_please3_reply(Bin) of
                {ok, Rec} -> {ok, extended, Rec};
                Other -> Other
            end;
        closed ->
            case request(EpmdIp, epmdx_proto:port_please2(Name), all, Deadline) of
                {ok, Bin} ->
                    case epmdx_proto:port2_reply(Bin) of
                        {ok, Rec} -> {ok, legacy, Rec};
                        Other -> Other
                    end;
                closed -> not_found;
                E -> E
            end;
        E ->
            E
    end.

%% The daemon's port: -epmd_port (set by erl from ERL_EPMD_PORT), else
%% ERL_EPMD_PORT, else 4369.
epmd_port() ->
    case init:get_argument(epmd_port) of
        {ok, [[P | _] | _]} -> list_to_integer(P);
        _ ->
            case os:getenv("ERL_EPMD_PORT") of
                false -> ?DEFAULT_EPMD_PORT;
                P -> list_to_integer(P)
            end
    end.

%% What this node registered: {Mode, Creation, [{Proto, Port, Extra}]}.
registered() ->
    gen_server:call(?SERVER, registered, infinity).

%% The transports this node speaks, in `-proto_dist' order.
local_transports() ->
    Names = case init:get_argument(proto_dist) of
                {ok, [Ps | _]} -> Ps;
                _ -> ["inet_tcp"]
            end,
    dedup([P || N <- Names, P <- [proto_of_dist(N)], P =/= unknown]).

%% The transport of a `-proto_dist' name (a fixed table).
proto_of_dist("epmdx_tcp") -> inet_tcp;
proto_of_dist("epmdx_tcp6") -> inet6_tcp;
proto_of_dist("epmdx_tls") -> inet_tls;
proto_of_dist("epmdx_tls6") -> inet6_tls;
proto_of_dist("epmdx_uds") -> uds;
proto_of_dist("inet_tcp") -> inet_tcp;
proto_of_dist("inet6_tcp") -> inet6_tcp;
proto_of_dist("inet_tls") -> inet_tls;
proto_of_dist("inet6_tls") -> inet6_tls;
proto_of_dist(_) -> unknown.

%% ------------------------------------------------------------------
%% gen_server

init([]) ->
    process_flag(trap_exit, true),
    %% Fail closed: a malformed security setting stops the node here.
    case epmdx_config:check() of
        ok ->
            epmdx_select:init_cache(),
            case epmdx_cluster:maybe_start() of
                ok ->
                    {ok, #st{}};
                {error, Why} ->
                    boot_error(io_lib:format("-kernel epmdx_cluster: cannot start: ~0tp",
                                             [Why])),
                    {stop, {epmdx_cluster, Why}}
            end;
        {error, Msg} ->
            boot_error(Msg),
            {stop, {epmdx_bad_setting, Msg}}
    end.

%% Said on the console too: at boot this runs before logger handlers do.
boot_error(Msg) ->
    Line = lists:flatten(io_lib:format("epmdx: ~ts~n", [Msg])),
    catch erlang:display_string(Line),
    logger:error("~ts", [Line]).

handle_call({register, Name, Proto, Port, Extra}, _From, St) ->
    T = {Proto, Port, Extra},
    case St of
        #st{mode = none} ->
            first_registration(Name, T, St);
        #st{name = N} when N =/= Name ->
            {reply, {error, {epmdx_other_name_registered, N}}, St};
        #st{mode = extended} ->
            add_transport(T, St);
        #st{mode = legacy} ->
            legacy_registration(T, St)
    end;
handle_call(registered, _From, #st{mode = M, creation = C, transports = Ts} = St) ->
    {reply, {M, C, Ts}, St};
handle_call(_, _From, St) ->
    {reply, {error, badarg}, St}.

handle_cast(_, St) ->
    {noreply, St}.

handle_info({tcp_closed, S}, #st{sock = S} = St) ->
    lost(St, closed);
handle_info({tcp_error, S, Reason}, #st{sock = S} = St) ->
    gen_tcp:close(S),
    lost(St, Reason);
handle_info({tcp, S, _Data}, #st{sock = S} = St) ->
    %% Nothing is expected unsolicited; keep listening for the close.
    _ = inet:setopts(S, [{active, once}]),
    {noreply, St};
handle_info(reconnect, St) ->
    reconnect(St#st{timer = undefined});
handle_info(_, St) ->
    {noreply, St}.

terminate(_, #st{sock = S}) when S =/= undefined ->
    gen_tcp:close(S);
terminate(_, _) ->
    ok.

%% ------------------------------------------------------------------
%% Registration

first_registration(Name, {Proto, _, _} = T, St) ->
    case open_local() of
        {ok, S} ->
            case call(S, alive3(Name, [T])) of
                {ok, Bin} ->
                    case epmdx_proto:alive3_reply(Bin) of
                        {ok, Creation} ->
                            active_once(S),
                            {reply, {ok, Creation},
                             St#st{name = Name, mode = extended, sock = S,
                                   creation = Creation, transports = [T]}};
                        {error, name_in_use} ->
                            gen_tcp:close(S),
                            {reply, {error, duplicate_name}, St};
                        {error, Status} ->
                            gen_tcp:close(S),
                            error_msg("epmdx refused to register ~ts (~s): ~p",
                                      [Name, Proto, Status]),
                            {reply, {error, {epmdx_refused, Status}}, St};
                        garbage ->
                            gen_tcp:close(S),
                            {reply, {error, {epmdx_bad_reply, Bin}}, St}
                    end;
                closed ->
                    gen_tcp:close(S),
                    warning_msg("the EPMD on port ~w does not speak the epmdx extension "
                                "(ALIVE3 closed without a reply): falling back to ALIVE2; "
                                "only one transport can be advertised", [epmd_port()]),
                    legacy_registration(T, St#st{name = Name, mode = legacy});
                {error, Reason} ->
                    gen_tcp:close(S),
                    {reply, {error, {epmdx_register_failed, Reason}}, St}
            end;
        {error, Reason} ->
            %% Usually fatal at boot, before logger handlers run: say it
            %% on the console too, as net_kernel does.
            Msg = io_lib:format("epmdx_epmd: cannot register ~ts (~s): no epmdx daemon "
                                "answers on 127.0.0.1 or ::1 port ~w (~p); start epmdx, "
                                "or set ERL_EPMD_PORT to its port~n",
                                [Name, Proto, epmd_port(), Reason]),
            catch erlang:display_string(lists:flatten(Msg)),
            logger:error("~ts", [Msg]),
            {reply, {error, {epmdx_unreachable, epmd_port(), Reason}}, St}
    end.

add_transport(T, #st{sock = undefined} = St) ->
    %% Between a lost connection and the reconnect: the reconnect's ALIVE3
    %% carries it.
    {reply, {ok, St#st.creation}, St#st{transports = St#st.transports ++ [T]}};
add_transport(T = {Proto, _, _}, #st{sock = S, name = Name} = St) ->
    _ = inet:setopts(S, [{active, false}]),
    flush_socket(S),
    case call(S, alive3(Name, [T])) of
        {ok, Bin} ->
            active_once(S),
            case epmdx_proto:alive3_reply(Bin) of
                {ok, _} ->
                    {reply, {ok, St#st.creation},
                     St#st{transports = St#st.transports ++ [T]}};
                {error, Status} ->
                    error_msg("epmdx refused to add transport ~s to ~ts: ~p",
                              [Proto, Name, Status]),
                    {reply, {error, {epmdx_refused, Status}}, St};
                garbage ->
                    {reply, {error, {epmdx_bad_reply, Bin}}, St}
            end;
        Closed ->
            gen_tcp:close(S),
            {noreply, St1} = lost(St, Closed),
            {reply, {error, {epmdx_connection_lost, Closed}}, St1}
    end.

%% Against a stock daemon: ALIVE2 for one transport, the legacy default of
%% docs/protocol.md: the first plain-TCP transport in `-proto_dist', else
%% the first IP one. The others listen but are not advertised.
legacy_registration(T = {Proto, Port, _}, #st{legacy = undefined, name = Name} = St) ->
    case Proto =:= legacy_choice() of
        true ->
            case alive2(Name, Port) of
                {ok, S, Creation} ->
                    warning_msg("registered ~ts with ALIVE2 (legacy): ~s on port ~w is the "
                                "only transport other nodes can look up",
                                [Name, Proto, Port]),
                    Cr = case St#st.creation of
                             -1 -> Creation;
                             C -> C
                         end,
                    {reply, {ok, Cr}, St#st{sock = S, legacy = Proto, creation = Cr,
                                            transports = St#st.transports ++ [T]}};
                {error, _} = E ->
                    {reply, E, St}
            end;
        false ->
            not_advertised(T, St)
    end;
legacy_registration(T, St) ->
    not_advertised(T, St).

not_advertised(T = {Proto, _, _}, #st{name = Name} = St) ->
    warning_msg("the EPMD on port ~w does not speak the epmdx extension: transport ~s "
                "of ~ts listens but is not advertised", [epmd_port(), Proto, Name]),
    %% -1: net_kernel picks a random creation if this is the first listener.
    {reply, {ok, St#st.creation}, St#st{transports = St#st.transports ++ [T]}}.

legacy_choice() ->
    Local = local_transports(),
    case [P || P <- Local, P =:= inet_tcp orelse P =:= inet6_tcp] of
        [P | _] -> P;
        [] ->
            case [P || P <- Local, P =/= uds] of
                [P | _] -> P;
                [] -> inet_tcp
            end
    end.

alive2(Name, Port) ->
    case open_local() of
        {ok, S} ->
            ok = inet:setopts(S, [{packet, raw}]),
            Req = epmdx_proto:alive2(Name, Port, {?ERL_DIST_VER_HIGH, ?ERL_DIST_VER_LOW}),
            case gen_tcp:send(S, frame(Req)) of
                ok ->
                    case recv_alive2(S, <<>>, deadline(?REQ_TIMEOUT)) of
                        {ok, Creation} ->
                            active_once(S),
                            {ok, S, Creation};
                        {error, name_in_use} ->
                            gen_tcp:close(S),
                            {error, duplicate_name};
                        {error, R} ->
                            gen_tcp:close(S),
                            {error, {epmd_register_failed, R}}
                    end;
                {error, R} ->
                    gen_tcp:close(S),
                    {error, {epmd_register_failed, R}}
            end;
        {error, Reason} ->
            {error, {epmdx_unreachable, epmd_port(), Reason}}
    end.

recv_alive2(S, Acc, Deadline) ->
    case epmdx_proto:alive2_reply(Acc) of
        garbage when byte_size(Acc) < 6 ->
            case gen_tcp:recv(S, 0, left(Deadline)) of
                {ok, More} -> recv_alive2(S, <<Acc/binary, More/binary>>, Deadline);
                {error, R} -> {error, R}
            end;
        garbage -> {error, garbage};
        Reply -> Reply
    end.

%% The registration connection is gone: re-register every 2 s.
lost(#st{name = Name} = St, Why) ->
    warning_msg("lost the connection to epmdx (~p); ~ts is not registered until it "
                "reconnects (retrying every ~w ms)", [Why, Name, ?RECONNECT_MS]),
    {noreply, schedule(St#st{sock = undefined})}.

schedule(#st{timer = undefined} = St) ->
    St#st{timer = erlang:send_after(?RECONNECT_MS, self(), reconnect)};
schedule(St) ->
    St.

reconnect(#st{sock = undefined, mode = extended, name = Name, transports = Ts} = St) ->
    case open_local() of
        {ok, S} ->
            case call(S, alive3(Name, Ts)) of
                {ok, Bin} ->
                    case epmdx_proto:alive3_reply(Bin) of
                        {ok, _} ->
                            active_once(S),
                            notice_msg("registered ~ts with epmdx again (~p)",
                                     [Name, [P || {P, _, _} <- Ts]]),
                            {noreply, St#st{sock = S}};
                        _ ->
                            gen_tcp:close(S),
                            {noreply, schedule(St)}
                    end;
                _ ->
                    gen_tcp:close(S),
                    {noreply, schedule(St)}
            end;
        _ ->
            {noreply, schedule(St)}
    end;
reconnect(#st{sock = undefined, mode = legacy, name = Name, legacy = P,
              transports = Ts} = St) when P =/= undefined ->
    {P, Port, _} = lists:keyfind(P, 1, Ts),
    case alive2(Name, Port) of
        {ok, S, _} -> {noreply, St#st{sock = S}};
        _ -> {noreply, schedule(St)}
    end;
reconnect(St) ->
    {noreply, St}.

%% -kernel epmdx_legacy_default inet_tls marks that transport as the one
%% stock callers (PORT_PLEASE2, NAMES) are given; unset: epmdx's default.
alive3(Name, Ts) ->
    Legacy = application:get_env(kernel, epmdx_legacy_default, undefined),
    Marked = [case P =:= Legacy of
                  true -> {P, Port, Extra, legacy};
                  false -> T
              end || {P, Port, Extra} = T <- Ts],
    epmdx_proto:alive3(Name, ?ERL_DIST_VER_HIGH, ?ERL_DIST_VER_LOW, Marked).

%% One request and its reply on a {packet,2} passive socket.
call(S, Req) ->
    case gen_tcp:send(S, Req) of
        ok ->
            case gen_tcp:recv(S, 0, ?REQ_TIMEOUT) of
                {ok, Bin} -> {ok, Bin};
                {error, closed} -> closed;
                {error, R} -> {error, R}
            end;
        {error, closed} -> closed;
        {error, R} -> {error, R}
    end.

%% Report the next data or the close as a message. A socket closed under us
%% is noticed by the next request on it.
active_once(S) ->
    _ = inet:setopts(S, [{active, once}]),
    ok.

flush_socket(S) ->
    receive
        {tcp, S, _} -> flush_socket(S)
    after 0 -> ok
    end.

open_local() ->
    Port = epmd_port(),
    Opts = [binary, {packet, 2}, {active, false}, {nodelay, true}],
    case gen_tcp:connect({127, 0, 0, 1}, Port, [inet | Opts], ?CONNECT_TIMEOUT) of
        {ok, S} ->
            {ok, S};
        {error, R4} ->
            case gen_tcp:connect({0, 0, 0, 0, 0, 0, 0, 1}, Port, [inet6 | Opts],
                                 ?CONNECT_TIMEOUT) of
                {ok, S} -> {ok, S};
                {error, _} -> {error, R4}
            end
    end.

%% ------------------------------------------------------------------
%% One-shot requests (lookups, listings)

%% Sends one framed request to the daemon at Ip and reads the reply: Hdr =
%% 2 or 4 for a u16/u32-length-prefixed reply (returned without its
%% prefix), `all' to read until the daemon closes. `closed' means the
%% daemon closed without sending anything (a stock epmd's answer to an
%% extended command).
request(Ip, Req, Hdr, Deadline) ->
    Family = case tuple_size(Ip) of
                 4 -> inet;
                 8 -> inet6
             end,
    case gen_tcp:connect(Ip, epmd_port(), [Family, binary, {packet, raw}, {active, false}],
                         min(left(Deadline), ?CONNECT_TIMEOUT)) of
        {ok, S} ->
            try
                case gen_tcp:send(S, frame(Req)) of
                    ok -> read_reply(S, Hdr, <<>>, Deadline);
                    {error, closed} -> closed;
                    {error, R} -> {error, R}
                end
            after
                gen_tcp:close(S)
            end;
        {error, R} ->
            {error, {epmd_unreachable, Ip, R}}
    end.

read_reply(S, Hdr, Acc, Deadline) ->
    case framed(Hdr, Acc) of
        {ok, Body} ->
            {ok, Body};
        more ->
            case gen_tcp:recv(S, 0, left(Deadline)) of
                {ok, More} ->
                    read_reply(S, Hdr, <<Acc/binary, More/binary>>, Deadline);
                {error, closed} when Acc =:= <<>> ->
                    closed;
                {error, closed} when Hdr =:= all ->
                    {ok, Acc};
                {error, closed} ->
                    {error, truncated_reply};
                {error, R} ->
                    {error, R}
            end
    end.

framed(all, _) -> more;
framed(2, <<Len:16, Body:Len/binary>>) -> {ok, Body};
framed(4, <<Len:32, Body:Len/binary>>) -> {ok, Body};
framed(_, _) -> more.

frame(Req) ->
    Bin = iolist_to_binary(Req),
    <<(byte_size(Bin)):16, Bin/binary>>.

%% Where to ask about Host: its first IPv4 address, else IPv6.
epmd_addr(Host) when is_tuple(Host) ->
    {ok, Host};
epmd_addr(Host) ->
    H = to_list(Host),
    case inet:getaddr(H, inet) of
        {ok, Ip} -> {ok, Ip};
        _ -> inet:getaddr(H, inet6)
    end.

deadline(Ms) ->
    erlang:monotonic_time(millisecond) + Ms.

left(Deadline) ->
    max(0, Deadline - erlang:monotonic_time(millisecond)).

%% ------------------------------------------------------------------

guess_proto(Driver) ->
    case local_transports() of
        [Only] when Only =/= uds -> Only;
        _ ->
            case Driver of
                inet6_tcp -> inet6_tcp;
                inet6 -> inet6_tcp;
                _ -> inet_tcp
            end
    end.

dedup(L) -> dedup(L, []).
dedup([], Acc) -> lists:reverse(Acc);
dedup([H | T], Acc) ->
    case lists:member(H, Acc) of
        true -> dedup(T, Acc);
        false -> dedup(T, [H | Acc])
    end.

to_bin(A) when is_atom(A) -> atom_to_binary(A, utf8);
to_bin(L) when is_list(L) -> unicode:characters_to_binary(L);
to_bin(B) when is_binary(B) -> B.

to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(L) when is_list(L) -> L.

error_msg(F, A) -> logger:error("epmdx_epmd: " ++ F, A).
warning_msg(F, A) -> logger:warning("epmdx_epmd: " ++ F, A).
notice_msg(F, A) -> logger:notice("epmdx_epmd: " ++ F, A).
