%% @doc Cluster membership from etcd for stock OTP nodes (docs/cluster.md,
%% docs/erlang.md): with
%%
%%   -kernel epmdx_cluster '[{etcd, "http://h1:2379,http://h2:2379"}, {cluster, "NAME"}]'
%%
%% this process reads the records epmdx daemons publish under
%% `/epmdx/NAME/nodes/<node>' (JSON: node, host, addresses, creation,
%% transports [{proto, port}], legacy) through etcd's v3 JSON gateway
%% (POST /v3/kv/range with base64 keys) with OTP's own httpc, in
%% stand-alone mode (no inets application to start, no dependency outside
%% OTP), every `interval' ms (default 1000), and keeps the node connected
%% to every member with net_kernel:connect_node/1.
%%
%% The transports and addresses come from the record: they are kept in a
%% named ETS table that epmdx_select reads (lookup/1) instead of asking the
%% peer host's EPMD, so the built-in policy (or the user's selector)
%% chooses among the record's transports and classifies the peer by the
%% record's addresses.
%%
%% Members that appear are connected; a member whose connection fails or
%% goes down is retried with backoff (500 ms doubling to 30 s); a member
%% that leaves is no longer retried (its live connection is left alone, as
%% libcluster's strategies do). Records that are not valid JSON, name an
%% unknown protocol (or `uds': records never carry socket paths), claim
%% port 0, or whose node does not match their key are ignored with a
%% warning (once per version of the record) and counted (info/0); they are
%% never turned into atoms. Node names of valid records become atoms (the
%% node must be dialled by atom), at most ?MAX_MEMBERS of them.
%%
%% The configuration is checked by check_setting/1 when the node starts
%% (epmdx_config): a malformed setting stops the node, naming it.
%% epmdx_epmd:init/1 starts this process (start_link/0) when the setting
%% is there; it connects nothing until net_kernel is up.
-module(epmdx_cluster).
-behaviour(gen_server).

-export([start_link/0, maybe_start/0, setting/0, check_setting/1, parse_setting/1,
         members/0, info/0, lookup/1, range_body/1, next_backoff/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(SERVER, ?MODULE).
-define(TABLE, epmdx_cluster_members).
-define(PROFILE, epmdx_cluster).
-define(DEFAULT_INTERVAL, 1000).
-define(MIN_INTERVAL, 100).
-define(MAX_INTERVAL, 60000).
-define(NOT_ALIVE_RETRY_MS, 200).
-define(BACKOFF_MIN_MS, 500).
-define(BACKOFF_MAX_MS, 30000).
%% Bounds on what one poll reads.
-define(MAX_MEMBERS, 10000).
-define(MAX_BODY, 16777216).
-define(REQUEST_TIMEOUT_MS, 5000).
-define(CONNECT_TIMEOUT_MS, 2000).


%% ------------------------------------------------------------------
%% Configuration

%% The raw setting: undefined, or {ok, Term}.
setting() ->
    application:get_env(kernel, epmdx_cluster).

%% For epmdx_config: ok, or {error, Message} naming the setting.
-spec check_setting(undefined | {ok, term()}) -> ok | {error, string()}.
check_setting(undefined) ->
    ok;
check_setting({ok, Term}) ->
    case parse_setting(Term) of
        {ok, _} -> ok;
        {error, Msg} -> {error, "-kernel epmdx_cluster: " ++ Msg}
    end.

-define(KEYS, [etcd, cluster, interval]).

%% [{etcd, URLs}, {cluster, Name}] and optionally {interval, Ms}; URLs a
%% string of comma-separated http:// URLs or a list of such strings.
-spec parse_setting(term()) -> {ok, map()} | {error, string()}.
parse_setting(M) when is_map(M) ->
    parse_setting(maps:to_list(M));
parse_setting(L) when is_list(L) ->
    case [E || E <- L, not (is_tuple(E) andalso tuple_size(E) =:= 2)] of
        [Bad | _] ->
            {error, fmt("expected {Key, Value} entries, got ~0tp", [Bad])};
        [] ->
            Keys = [K || {K, _} <- L],
            case {[K || K <- Keys, not lists:member(K, ?KEYS)], Keys -- lists:usort(Keys)} of
                {[K | _], _} ->
                    {error, fmt("unknown key ~0tp (known: ~w)", [K, ?KEYS])};
                {[], [K | _]} ->
                    {error, fmt("key ~0tp given twice", [K])};
                {[], []} ->
                    parse_entries(L)
            end
    end;
parse_setting(Other) ->
    {error, fmt("expected [{etcd, \"http://host:2379\"}, {cluster, \"NAME\"}], got ~0tp",
                [Other])}.

parse_entries(L) ->
    case {lists:keyfind(etcd, 1, L), lists:keyfind(cluster, 1, L)} of
        {false, _} -> {error, "no {etcd, URLs} entry"};
        {_, false} -> {error, "no {cluster, Name} entry"};
        {{etcd, U}, {cluster, C}} ->
            Interval = case lists:keyfind(interval, 1, L) of
                           false -> ?DEFAULT_INTERVAL;
                           {interval, I} -> I
                       end,
            case {endpoints(U), cluster_name(C), interval(Interval)} of
                {{error, E}, _, _} -> {error, E};
                {_, {error, E}, _} -> {error, E};
                {_, _, {error, E}} -> {error, E};
                {{ok, Us}, {ok, Name}, {ok, Ms}} ->
                    {ok, #{endpoints => Us, cluster => Name, interval => Ms}}
            end
    end.

endpoints(U) when is_binary(U) ->
    endpoints(unicode:characters_to_list(U));
endpoints(U) ->
    Strs = case io_lib:char_list(U) of
               true -> string:lexemes(U, ",");
               false when is_list(U) -> U;
               false -> bad
           end,
    case Strs of
        bad ->
            {error, fmt("etcd: expected a URL string or a list of them, got ~0tp", [U])};
        [] ->
            {error, "etcd: no URL given"};
        _ ->
            Parsed = [url(string:trim(S)) || S <- Strs],
            case [E || {error, E} <- Parsed] of
                [E | _] -> {error, E};
                [] -> {ok, [Url || {ok, Url} <- Parsed]}
            end
    end.

url(S) ->
    case io_lib:char_list(S) of
        false ->
            {error, fmt("etcd: expected a URL string, got ~0tp", [S])};
        true ->
            case uri_string:parse(S) of
                #{scheme := "http", host := H} = U when H =/= "" ->
                    case maps:is_key(query, U) orelse maps:is_key(fragment, U) orelse
                        maps:is_key(userinfo, U) of
                        true ->
                            {error, fmt("etcd: ~ts: expected http://host:port", [S])};
                        false ->
                            {ok, string:trim(S, trailing, "/")}
                    end;
                #{scheme := "https"} ->
                    {error, fmt("etcd: ~ts: https is not supported by the adapter; use an "
                                "http endpoint (e.g. a local etcd grpc-proxy)", [S])};
                _ ->
                    {error, fmt("etcd: ~0tp is not an http://host:port URL", [S])}
            end
    end.

cluster_name(B) when is_binary(B) ->
    cluster_name(unicode:characters_to_list(B));
cluster_name(C) ->
    Ok = io_lib:char_list(C) andalso C =/= "" andalso length(C) =< 64 andalso
        C =/= "." andalso C =/= ".." andalso
        lists:all(fun(Ch) -> (Ch >= $a andalso Ch =< $z) orelse (Ch >= $A andalso Ch =< $Z)
                                 orelse (Ch >= $0 andalso Ch =< $9)
                                 orelse Ch =:= $_ orelse Ch =:= $- orelse Ch =:= $.
                  end, C),
    case Ok of
        true -> {ok, C};
        false -> {error, fmt("cluster: expected a name of 1-64 letters, digits, '_', '-' "
                             "or '.', got ~0tp", [C])}
    end.

interval(I) when is_integer(I), I >= ?MIN_INTERVAL, I =< ?MAX_INTERVAL -> {ok, I};
interval(I) ->
    {error, fmt("interval: expected milliseconds between ~w and ~w, got ~0tp",
                [?MIN_INTERVAL, ?MAX_INTERVAL, I])}.

%% ------------------------------------------------------------------
%% API

%% Started by epmdx_epmd:init/1: the process when the setting is there.
maybe_start() ->
    case setting() of
        undefined -> ok;
        {ok, _} ->
            case start_link() of
                {ok, _} -> ok;
                {error, {already_started, _}} -> ok;
                {error, _} = E -> E
            end
    end.

start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%% The current members' node names, sorted (this node included when it
%% is published).
-spec members() -> [string()].
members() ->
    try lists:sort([N || {N, _} <- ets:tab2list(?TABLE)])
    catch error:badarg -> []
    end.

%% Counters and state: members, bad_records (records ignored, counted once
%% per version), errors (failed polls), polls, revision (etcd's, of the
%% last good poll), endpoint (the one in use), connected (members with a
%% connection), retrying (members being connected or waiting to be).
-spec info() -> map().
info() ->
    gen_server:call(?SERVER, info, 5000).

%% For epmdx_select: the record of Node ("name@host"), or `none'.
-spec lookup(string()) -> {ok, epmdx_cluster_record:member()} | none.
lookup(Node) ->
    try ets:lookup(?TABLE, Node) of
        [{_, M}] -> {ok, M};
        [] -> none
    catch error:badarg -> none
    end.

%% ------------------------------------------------------------------
%% gen_server

init([]) ->
    {ok, Cfg} = parse_setting(element(2, setting())),
    _ = ets:new(?TABLE, [named_table, protected, set, {read_concurrency, true}]),
    ok = net_kernel_monitor(),
    self() ! poll,
    {ok, #{cfg => Cfg, httpc => undefined, endpoint => 0, members => #{},
           atoms => #{}, bad => 0, bad_seen => #{}, errors => 0, polls => 0,
           revision => undefined, failing => false, poller => undefined,
           conns => #{}}}.

%% Until net_kernel runs, monitor_nodes/2 fails: retried from poll.
net_kernel_monitor() ->
    _ = catch net_kernel:monitor_nodes(true, [{node_type, all}]),
    ok.

handle_call(info, _From, #{members := Ms, conns := Cs} = S) ->
    #{cfg := #{endpoints := Us}, endpoint := I} = S,
    Connected = [N || {N, connected} <- maps:to_list(Cs)],
    Retrying = [N || {N, C} <- maps:to_list(Cs), C =/= connected],
    {reply, #{members => lists:sort(maps:keys(Ms)), bad_records => maps:get(bad, S),
              errors => maps:get(errors, S), polls => maps:get(polls, S),
              revision => maps:get(revision, S), endpoint => lists:nth(I + 1, Us),
              connected => lists:sort(Connected), retrying => lists:sort(Retrying)}, S};
handle_call(_, _From, S) ->
    {reply, {error, badarg}, S}.

handle_cast(_, S) ->
    {noreply, S}.

handle_info(poll, #{poller := undefined} = S) ->
    {noreply, start_poll(S)};
handle_info(poll, S) ->
    {noreply, S};
handle_info({'DOWN', Ref, process, _, Reason}, #{poller := Ref} = S) ->
    S1 = S#{poller := undefined},
    Next = case erlang:is_alive() of
               true -> interval_of(S);
               false -> ?NOT_ALIVE_RETRY_MS
           end,
    erlang:send_after(Next, self(), poll),
    {noreply, polled(Reason, S1)};
handle_info({'DOWN', Ref, process, _, Reason}, #{conns := Cs} = S) ->
    case [N || {N, {connecting, R, _}} <- maps:to_list(Cs), R =:= Ref] of
        [Node] -> {noreply, connect_result(Node, Reason, S)};
        [] -> {noreply, S}
    end;
handle_info({retry, Node}, #{conns := Cs} = S) ->
    case maps:find(Node, Cs) of
        {ok, {waiting, _, Backoff}} -> {noreply, connect(Node, Backoff, S)};
        _ -> {noreply, S}
    end;
handle_info({nodedown, Atom, _}, #{conns := Cs} = S) ->
    Node = atom_to_list(Atom),
    case maps:find(Node, Cs) of
        {ok, connected} ->
            logger:info("epmdx_cluster: lost the connection to member ~ts; reconnecting",
                        [Node]),
            {noreply, connect(Node, ?BACKOFF_MIN_MS, S)};
        _ -> {noreply, S}
    end;
handle_info(_, S) ->
    {noreply, S}.

terminate(_, _) ->
    ok.

interval_of(#{cfg := #{interval := I}}) -> I.

%% ------------------------------------------------------------------
%% Polling

%% One poll runs in a worker (the HTTP request must not block the
%% server); the worker exits with {epmdx_poll, Result}.
start_poll(#{cfg := #{endpoints := Us, cluster := C}, endpoint := I} = S0) ->
    S = ensure_httpc(S0),
    case erlang:is_alive() of
        true -> net_kernel_monitor();
        false -> ok
    end,
    #{httpc := H} = S,
    Url = lists:nth(I + 1, Us) ++ "/v3/kv/range",
    Body = range_body(C),
    {_, Ref} = spawn_monitor(fun() -> exit({epmdx_poll, fetch(H, Url, Body)}) end),
    S#{poller := Ref}.

ensure_httpc(#{httpc := undefined} = S) ->
    case inets:start(httpc, [{profile, ?PROFILE}], stand_alone) of
        {ok, Pid} -> S#{httpc := Pid};
        {error, {already_started, Pid}} -> S#{httpc := Pid};
        {error, Why} -> error({epmdx_cluster_httpc, Why})
    end;
ensure_httpc(S) ->
    S.

%% The range request for every key under /epmdx/NAME/nodes/: keys and
%% range_end base64 (etcd's gateway encodes bytes fields so), at most
%% ?MAX_MEMBERS + 1 keys (one more tells that there are too many).
-spec range_body(string()) -> binary().
range_body(Cluster) ->
    Prefix = iolist_to_binary(["/epmdx/", Cluster, "/nodes/"]),
    End = iolist_to_binary(["/epmdx/", Cluster, "/nodes0"]),
    iolist_to_binary(["{\"key\":\"", base64:encode(Prefix), "\",\"range_end\":\"",
                      base64:encode(End), "\",\"limit\":", integer_to_list(?MAX_MEMBERS + 1),
                      "}"]).

%% POST Body to Url, streaming the reply so that no more than ?MAX_BODY
%% bytes are kept: {ok, Body} | {error, Why}.
fetch(H, Url, Body) ->
    Req = {Url, [], "application/json", Body},
    HttpOpts = [{timeout, ?REQUEST_TIMEOUT_MS}, {connect_timeout, ?CONNECT_TIMEOUT_MS},
                {autoredirect, false}],
    Opts = [{sync, false}, {stream, self}, {body_format, binary}],
    case httpc:request(post, Req, HttpOpts, Opts, H) of
        {ok, Id} ->
            Deadline = erlang:monotonic_time(millisecond) + ?REQUEST_TIMEOUT_MS + 1000,
            Result = collect(Id, [], 0, Deadline),
            case Result of
                {error, _} -> _ = httpc:cancel_request(Id, H);
                _ -> ok
            end,
            Result;
        {error, Why} ->
            {error, Why}
    end.

collect(Id, Acc, Size, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {http, {Id, stream_start, _Headers}} ->
            collect(Id, Acc, Size, Deadline);
        {http, {Id, stream, Part}} when Size + byte_size(Part) > ?MAX_BODY ->
            {error, {reply_larger_than, ?MAX_BODY}};
        {http, {Id, stream, Part}} ->
            collect(Id, [Part | Acc], Size + byte_size(Part), Deadline);
        {http, {Id, stream_end, _Headers}} ->
            {ok, iolist_to_binary(lists:reverse(Acc))};
        {http, {Id, {{_, 200, _}, _, B}}} ->
            {ok, B};
        {http, {Id, {{_, Status, _}, _, _}}} ->
            {error, {http_status, Status}};
        {http, {Id, {error, Why}}} ->
            {error, Why}
    after Left ->
            {error, timeout}
    end.

polled({epmdx_poll, {ok, Body}}, S) ->
    case epmdx_cluster_record:parse_range(Body) of
        {ok, Rev, Kvs, More} ->
            More andalso logger:warning("epmdx_cluster: more than ~w records; following "
                                        "the first ~w", [?MAX_MEMBERS, ?MAX_MEMBERS]),
            S1 = case maps:get(failing, S) of
                     true ->
                         logger:notice("epmdx_cluster: etcd answers again (~ts)",
                                       [current_endpoint(S)]),
                         S#{failing := false};
                     false -> S
                 end,
            apply_records(lists:sublist(Kvs, ?MAX_MEMBERS),
                          S1#{polls := maps:get(polls, S1) + 1, revision := Rev});
        {error, Why} ->
            poll_failed({bad_range_reply, Why}, S)
    end;
polled({epmdx_poll, {error, Why}}, S) ->
    poll_failed(Why, S);
polled(Other, S) ->
    poll_failed({poll_crashed, Other}, S).

%% Keep the members as they are (etcd down must not drop the cluster) and
%% try the next endpoint next time.
poll_failed(Why, #{cfg := #{endpoints := Us}, endpoint := I} = S) ->
    case maps:get(failing, S) of
        false ->
            logger:warning("epmdx_cluster: cannot read the members from ~ts: ~0tp; keeping "
                           "the ~w known members and retrying",
                           [current_endpoint(S), Why, map_size(maps:get(members, S))]);
        true -> ok
    end,
    S#{errors := maps:get(errors, S) + 1, failing := true,
       endpoint := (I + 1) rem length(Us)}.

current_endpoint(#{cfg := #{endpoints := Us}, endpoint := I}) ->
    lists:nth(I + 1, Us).

%% New member set from one poll: parse, diff, connect the new ones.
apply_records(Kvs, #{cfg := #{cluster := C}, members := Old} = S0) ->
    Prefix = iolist_to_binary(["/epmdx/", C, "/nodes/"]),
    {New, S1} = lists:foldl(
                  fun({K, V, ModRev}, {Acc, S}) ->
                          case epmdx_cluster_record:parse(strip(Prefix, K), V) of
                              {ok, #{node := N} = M} -> {Acc#{N => M}, S};
                              {error, Why} -> {Acc, bad_record(K, ModRev, Why, S)}
                          end
                  end, {#{}, S0}, Kvs),
    Self = atom_to_list(node()),
    Gone = [N || N <- maps:keys(Old), not maps:is_key(N, New)],
    Came = [N || N <- maps:keys(New), not maps:is_key(N, Old)],
    [ets:delete(?TABLE, N) || N <- Gone],
    [ets:insert(?TABLE, {N, M}) || {N, M} <- maps:to_list(New), maps:get(N, Old, none) =/= M],
    [logger:info("epmdx_cluster: member ~ts left", [N]) || N <- Gone],
    [logger:info("epmdx_cluster: member ~ts joined", [N]) || N <- Came],
    S2 = lists:foldl(fun forget/2, S1#{members := New}, Gone),
    S3 = S2#{bad_seen := maps:with([K || {K, _, _} <- Kvs], maps:get(bad_seen, S2))},
    case erlang:is_alive() of
        true ->
            lists:foldl(fun(N, S) -> ensure_connecting(N, S) end, S3,
                        [N || N <- maps:keys(New), N =/= Self]);
        false ->
            S3
    end.

strip(Prefix, K) ->
    case string:prefix(K, Prefix) of
        nomatch -> K;
        Rest -> Rest
    end.

%% Counted and warned once per (key, mod_revision).
bad_record(K, ModRev, Why, #{bad_seen := Seen} = S) ->
    case maps:get(K, Seen, none) of
        ModRev ->
            S;
        _ ->
            Shown = binary:part(K, 0, min(byte_size(K), 300)),
            logger:warning("epmdx_cluster: ignoring the record ~0tp: ~ts", [Shown, Why]),
            S#{bad := maps:get(bad, S) + 1, bad_seen := Seen#{K => ModRev}}
    end.

%% ------------------------------------------------------------------
%% Connecting
%%
%% conns: Node => connected | {connecting, MonitorRef, Backoff} |
%% {waiting, TimerRef, Backoff}; Backoff is the wait after the next failure.

ensure_connecting(Node, #{conns := Cs} = S) ->
    case maps:find(Node, Cs) of
        error -> connect(Node, ?BACKOFF_MIN_MS, S);
        {ok, _} -> S
    end.

connect(Node, Backoff, #{conns := Cs, atoms := As} = S) ->
    {Atom, As1} = case maps:find(Node, As) of
                      {ok, A} -> {A, As};
                      %% A valid member's name: dialling needs the atom.
                      error -> A = list_to_atom(Node), {A, As#{Node => A}}
                  end,
    {_, Ref} = spawn_monitor(fun() ->
                                     exit({epmdx_connect, net_kernel:connect_node(Atom)})
                             end),
    S#{conns := Cs#{Node => {connecting, Ref, Backoff}}, atoms := As1}.

connect_result(Node, Reason, #{conns := Cs, members := Ms} = S) ->
    {connecting, _, Backoff} = maps:get(Node, Cs),
    case {maps:is_key(Node, Ms), Reason} of
        {false, _} ->
            S#{conns := maps:remove(Node, Cs)};
        {true, {epmdx_connect, true}} ->
            S#{conns := Cs#{Node => connected}};
        {true, Other} ->
            logger:info("epmdx_cluster: cannot connect to member ~ts (~0tp); retrying in "
                        "~w ms", [Node, Other, Backoff]),
            T = erlang:send_after(Backoff, self(), {retry, Node}),
            S#{conns := Cs#{Node => {waiting, T, next_backoff(Backoff)}}}
    end.

%% Doubling, capped.
-spec next_backoff(pos_integer()) -> pos_integer().
next_backoff(B) -> min(?BACKOFF_MAX_MS, 2 * B).

%% A member that left: no more retries.
forget(Node, #{conns := Cs} = S) ->
    case maps:find(Node, Cs) of
        {ok, {waiting, T, _}} ->
            _ = erlang:cancel_timer(T),
            S#{conns := maps:remove(Node, Cs)};
        {ok, {connecting, _, _}} ->
            %% Its result is dropped in connect_result/3.
            S;
        {ok, connected} ->
            S#{conns := maps:remove(Node, Cs)};
        error ->
            S
    end.

fmt(F, A) -> lists:flatten(io_lib:format(F, A)).
