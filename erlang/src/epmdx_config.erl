%% @doc The adapter's settings, checked when the node starts: security
%% settings fail closed. A malformed `-kernel epmdx_policy', an
%% `epmdx_selector' that is not an exported Mod:Fun/4, or (for a node
%% with a TLS transport) an unreadable `-ssl_dist_optfile', a certificate,
%% key or CA file that is missing or holds no PEM entry, or a TLS option
%% OTP's ssl rejects, or a malformed `-kernel epmdx_cluster' (see
%% epmdx_cluster) stops the node at start with a message that names the
%% setting. epmdx_epmd:init/1 runs check/0.
%%
%% Also which spelling made epmdx_epmd the EPMD module: `-kernel
%% epmd_module epmdx_epmd' (read by OTP 27.2 and later) or `-epmd_module
%% epmdx_epmd' (every release; deprecated since OTP 27.2). On an OTP that
%% ignores the kernel parameter, a node that sets only that runs OTP's
%% erl_epmd, and the wrappers' listen refuses to start (epmd_module_check/0)
%% rather than register a multi-transport node as a stock one.
%%
%% The checks run inside kernel's boot, before the file server and before
%% the ssl application: files are read with prim_file, and TLS options are
%% given to ssl:listen/2, whose option validation runs before it needs any
%% ssl process (a valid set then fails with noproc, which counts as valid).
-module(epmdx_config).

-export([check/0, check_policy/1, check_selector/1, check_tls/0,
         epmd_module_setting/0, epmd_module_check/0, otp_version/0]).

-define(FILE_KEYS, [certfile, keyfile, cacertfile, dhfile]).
%% Options ssl:listen/2 refuses because only a client may give them.
-define(CLIENT_ONLY, [server_name_indication, customize_hostname_check, reuse_session,
                      alpn_advertised_protocols, client_preferred_next_protocols,
                      srp_identity, max_fragment_length, fallback, session_tickets,
                      use_ticket, early_data, middlebox_comp_mode]).
-define(MAX_OPTFILE, 1048576).

%% ok, or {error, Message}; Message names the setting. Logs which spelling
%% of the EPMD module setting it saw.
-spec check() -> ok | {error, string()}.
check() ->
    report_epmd_module(),
    Checks = [fun() -> check_policy(application:get_env(kernel, epmdx_policy)) end,
              fun() -> check_selector(selector_setting()) end,
              fun check_tls/0,
              fun() -> epmdx_cluster:check_setting(epmdx_cluster:setting()) end],
    first_error(Checks).

first_error([]) -> ok;
first_error([F | Fs]) ->
    case F() of
        ok -> first_error(Fs);
        {error, _} = E -> E
    end.

%% ------------------------------------------------------------------
%% Policy and selector

-spec check_policy(undefined | {ok, term()}) -> ok | {error, string()}.
check_policy(undefined) ->
    ok;
check_policy({ok, Config}) ->
    case epmdx_policy:parse(Config) of
        {ok, _} -> ok;
        {error, Msg} -> {error, "-kernel epmdx_policy: " ++ Msg}
    end.

selector_setting() ->
    case application:get_env(kernel, epmdx_selector) of
        {ok, V} -> {kernel, V};
        undefined ->
            case init:get_argument(epmdx_selector) of
                {ok, [Args | _]} -> {flag, Args};
                error -> undefined
            end
    end.

-spec check_selector(undefined | {kernel, term()} | {flag, [string()]}) ->
          ok | {error, string()}.
check_selector(undefined) ->
    ok;
check_selector({kernel, {M, F}}) when is_atom(M), is_atom(F) ->
    exported("-kernel epmdx_selector", M, F);
check_selector({kernel, Other}) ->
    {error, fmt("-kernel epmdx_selector: expected {Module, Function}, got ~0tp", [Other])};
check_selector({flag, [M, F]}) ->
    exported("-epmdx_selector", list_to_atom(M), list_to_atom(F));
check_selector({flag, Args}) ->
    {error, fmt("-epmdx_selector: expected a module and a function, got ~0tp", [Args])}.

exported(Setting, M, F) ->
    _ = code:ensure_loaded(M),
    case erlang:function_exported(M, F, 4) of
        true -> ok;
        false -> {error, fmt("~s: ~p:~p/4 is not an exported function (is its directory "
                             "in the code path?)", [Setting, M, F])}
    end.

%% ------------------------------------------------------------------
%% TLS

%% Only for a node with a TLS transport: the options file, the files each
%% option names, and the options themselves.
-spec check_tls() -> ok | {error, string()}.
check_tls() ->
    case lists:any(fun(P) -> P =:= inet_tls orelse P =:= inet6_tls end,
                   epmdx_epmd:local_transports()) of
        false -> ok;
        true -> first_error([fun check_optfile/0, fun check_dist_opts/0])
    end.

check_optfile() ->
    case init:get_argument(ssl_dist_optfile) of
        {ok, [[File | _] | _]} ->
            Setting = "-ssl_dist_optfile " ++ File,
            case read_terms(File) of
                {ok, [Opts]} when is_list(Opts) ->
                    check_roles(Setting, Opts);
                {ok, _} ->
                    {error, Setting ++ ": expected one list [{server, Options}, "
                            "{client, Options}] ending in a full stop"};
                {error, Why} ->
                    {error, fmt("~ts: ~ts", [Setting, Why])}
            end;
        _ ->
            ok
    end.

check_roles(_Setting, []) ->
    ok;
check_roles(Setting, [{Role, Opts} | Rest]) when (Role =:= server orelse Role =:= client),
                                                 is_list(Opts) ->
    case check_opts(fmt("~ts: ~s", [Setting, Role]), Role, Opts) of
        ok -> check_roles(Setting, Rest);
        E -> E
    end;
check_roles(Setting, [Other | _]) ->
    {error, fmt("~ts: expected {server, Options} or {client, Options}, got ~0tp",
                [Setting, Other])}.

check_opts(Where, Role, Opts) ->
    case [O || O <- Opts, not is_tuple(O) orelse tuple_size(O) =/= 2] of
        [Bad | _] ->
            {error, fmt("~ts: malformed option ~0tp (expected {Key, Value})", [Where, Bad])};
        [] ->
            Files = [{K, V} || {K, V} <- Opts, lists:member(K, ?FILE_KEYS)],
            case first_error([fun() -> check_file(Where, K, V) end || {K, V} <- Files]) of
                ok -> check_ssl_opts(Where, Role, Opts);
                E -> E
            end
    end.

%% A file option must name a readable file holding at least one PEM entry.
check_file(Where, Key, Path) ->
    case io_lib:char_list(Path) orelse is_binary(Path) of
        false ->
            {error, fmt("~ts: ~p: expected a file name, got ~0tp", [Where, Key, Path])};
        true ->
            case prim_file:read_file(Path) of
                {ok, Bin} ->
                    try public_key:pem_decode(Bin) of
                        [_ | _] -> ok;
                        [] -> {error, fmt("~ts: ~p ~0tp: no PEM entry in the file",
                                          [Where, Key, Path])}
                    catch _:_ ->
                            {error, fmt("~ts: ~p ~0tp: not a PEM file", [Where, Key, Path])}
                    end;
                {error, Why} ->
                    {error, fmt("~ts: ~p ~0tp: ~ts", [Where, Key, Path, file:format_error(Why)])}
            end
    end.

%% ssl:listen/2 validates the value of every option it knows before it
%% needs an ssl process; an option it does not know goes on to
%% gen_tcp:listen/2, which raises badarg, unless something that needs the
%% ssl application fails first (a CA file at boot): so each option is
%% also tried alone for that.
check_ssl_opts(Where, Role, Opts) ->
    Checked = case Role of
                  server -> Opts;
                  client -> [O || {K, _} = O <- Opts, not lists:member(K, ?CLIENT_ONLY)]
              end,
    case try_listen(Checked) of
        {rejected, What} ->
            {error, fmt("~ts: TLS option rejected by ssl: ~0tp", [Where, What])};
        _ ->
            case [K || {K, _} = O <- Checked, try_listen([O]) =:= unknown] of
                [K | _] -> {error, fmt("~ts: ~0tp is not a TLS option ssl knows", [Where, K])};
                [] -> ok
            end
    end.

try_listen(Opts) ->
    try ssl:listen(0, [{ip, {127, 0, 0, 1}} | Opts]) of
        {ok, S} ->
            _ = ssl:close(S),
            ok;
        {error, {options, What}} -> {rejected, What};
        {error, {option, _, _} = What} -> {rejected, What};
        {error, _} -> ok
    catch
        error:badarg -> unknown;
        exit:badarg -> unknown;
        _:_ -> ok
    end.

%% `-ssl_dist_opt Key Value ...': the file-valued keys.
check_dist_opts() ->
    Args = case init:get_argument(ssl_dist_opt) of
               {ok, L} -> lists:append(L);
               error -> []
           end,
    check_dist_opt_pairs(Args).

check_dist_opt_pairs([K, V | Rest]) ->
    R = case string:split(K, "_") of
            [Role, Key] when Role =:= "server"; Role =:= "client" ->
                case lists:member(Key, [atom_to_list(F) || F <- ?FILE_KEYS]) of
                    true -> check_file("-ssl_dist_opt " ++ K, list_to_atom(Key), V);
                    false -> ok
                end;
            _ ->
                {error, fmt("-ssl_dist_opt ~ts: expected server_<option> or client_<option>",
                            [K])}
        end,
    case R of
        ok -> check_dist_opt_pairs(Rest);
        E -> E
    end;
check_dist_opt_pairs([K]) ->
    {error, fmt("-ssl_dist_opt ~ts: no value", [K])};
check_dist_opt_pairs([]) ->
    ok.

%% file:consult without the file server.
read_terms(File) ->
    case prim_file:read_file(File) of
        {ok, Bin} when byte_size(Bin) > ?MAX_OPTFILE ->
            {error, "larger than 1 MiB"};
        {ok, Bin} ->
            case erl_scan:string(unicode:characters_to_list(Bin)) of
                {ok, Tokens, _} -> parse_terms(Tokens, []);
                {error, {Line, Mod, E}, _} ->
                    {error, fmt("line ~p: ~ts", [Line, Mod:format_error(E)])}
            end;
        {error, Why} ->
            {error, file:format_error(Why)}
    end.

parse_terms([], Acc) ->
    {ok, lists:reverse(Acc)};
parse_terms(Tokens, Acc) ->
    case lists:splitwith(fun(T) -> element(1, T) =/= dot end, Tokens) of
        {_, []} ->
            {error, "the last term does not end in a full stop"};
        {Term, [Dot | Rest]} ->
            case erl_parse:parse_term(Term ++ [Dot]) of
                {ok, T} -> parse_terms(Rest, [T | Acc]);
                {error, {Line, Mod, E}} ->
                    {error, fmt("line ~p: ~ts", [Line, Mod:format_error(E)])}
            end
    end.

%% ------------------------------------------------------------------
%% The EPMD module setting

%% Where the running OTP takes the EPMD module from, and whether it is
%% epmdx_epmd: `kernel_parameter', `flag', `both' or `none'.
-spec epmd_module_setting() -> {kernel_parameter | flag | both | none, module() | undefined}.
epmd_module_setting() ->
    Param = case application:get_env(kernel, epmd_module) of
                {ok, M} -> M;
                undefined -> undefined
            end,
    Flag = case init:get_argument(epmd_module) of
               {ok, [[F | _] | _]} -> list_to_atom(F);
               _ -> undefined
           end,
    case {Param, Flag, reads_kernel_parameter()} of
        {undefined, undefined, _} -> {none, undefined};
        {P, undefined, true} -> {kernel_parameter, P};
        {_, undefined, false} -> {none, undefined};
        {undefined, F1, _} -> {flag, F1};
        {_, F1, false} -> {flag, F1};
        {P, _, true} -> {both, P}
    end.

%% OTP reads `-kernel epmd_module' from 27.2 on.
reads_kernel_parameter() ->
    otp_version() >= [27, 2].

%% At info level (at boot, logger prints a notice twice: once live, once
%% replayed); the deprecated flag on an OTP that reads the parameter is a
%% warning.
report_epmd_module() ->
    case epmd_module_setting() of
        {kernel_parameter, _} ->
            logger:info("epmdx_epmd: the EPMD module, set with -kernel epmd_module");
        {flag, _} ->
            case reads_kernel_parameter() of
                true ->
                    logger:warning("epmdx_epmd: the EPMD module, set with -epmd_module "
                                   "(deprecated since OTP 27.2: use -kernel epmd_module "
                                   "epmdx_epmd)");
                false ->
                    logger:info("epmdx_epmd: the EPMD module, set with -epmd_module")
            end;
        _ ->
            ok
    end.

%% For the wrappers' listen: ok when epmdx_epmd is the EPMD module, else
%% {error, Message} saying which setting to use on this OTP.
-spec epmd_module_check() -> ok | {error, string()}.
epmd_module_check() ->
    case net_kernel:epmd_module() of
        epmdx_epmd ->
            ok;
        Other ->
            Hint = case {application:get_env(kernel, epmd_module), reads_kernel_parameter()} of
                       {{ok, epmdx_epmd}, false} ->
                           fmt("-kernel epmd_module epmdx_epmd is ignored by OTP ~s (it is "
                               "read from OTP 27.2 on): use -epmd_module epmdx_epmd",
                               [otp_version_string()]);
                       {_, true} ->
                           "set -kernel epmd_module epmdx_epmd";
                       {_, false} ->
                           "set -epmd_module epmdx_epmd"
                   end,
            {error, fmt("the epmdx_* distribution modules need epmdx_epmd as the EPMD "
                        "module, but it is ~p: ~ts", [Other, Hint])}
    end.

%% The running OTP's full version, e.g. [25, 2, 3].
-spec otp_version() -> [non_neg_integer()].
otp_version() ->
    try
        [list_to_integer(X) || X <- string:lexemes(otp_version_string(), ".")]
    catch _:_ ->
            [list_to_integer(erlang:system_info(otp_release))]
    end.

otp_version_string() ->
    Rel = erlang:system_info(otp_release),
    File = filename:join([code:root_dir(), "releases", Rel, "OTP_VERSION"]),
    case prim_file:read_file(File) of
        {ok, Bin} -> string:trim(binary_to_list(Bin));
        _ -> Rel
    end.

fmt(F, A) -> lists:flatten(io_lib:format(F, A)).
