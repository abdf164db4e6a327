%% @doc Distribution over Unix-domain stream sockets (`-proto_dist
%% epmdx_uds'), registered with epmdx as `uds' with port 0 and the socket's
%% absolute path as Extra. epmdx shows `uds' transports to local callers
%% only, so only nodes on this host find it.
%%
%% The carrier is OTP's own inet_tcp_dist machinery (its exported
%% generalized API: gen_accept/2, gen_accept_connection/6, gen_setup/6)
%% driven by epmdx_uds_driver, which opens `local' family gen_tcp sockets:
%% the connection is a port-controlled socket exactly like TCP, with
%% `{packet,2}' during the handshake and `{packet,4}' after, the same
%% framing as the Rust node's `uds' transport.
%%
%% Socket path: `<dir>/<name>' where `<dir>' is `-kernel epmdx_uds_dir
%% "Dir"', else $ERLDIST_UDS_DIR, else $XDG_RUNTIME_DIR/erldist, else
%% /tmp/erldist-<uid> (the convention of crates/erldist/src/transport/uds.rs,
%% so Erlang and Rust nodes of one user share the directory). The directory
%% is created with mode 0700 and must belong to the node's user. A stale
%% socket (nobody answers on it) is replaced; a live one means the name is
%% taken. The file is removed when the listener is closed.
-module(epmdx_uds_dist).

-export([listen/1, listen/2, accept/1, accept_connection/5, setup/5, close/1,
         select/1, address/0, is_node_name/1]).
-export([socket_dir/0]).

-include_lib("kernel/include/net_address.hrl").
-include_lib("kernel/include/file.hrl").

-define(DRIVER, epmdx_uds_driver).
%% sun_path holds 108 bytes with the NUL; the Rust node allows 106.
-define(MAX_PATH, 106).

listen(Name) ->
    {ok, Host} = inet:gethostname(),
    listen(Name, Host).

listen(Name, Host) ->
    EpmdMod = net_kernel:epmd_module(),
    Dir = socket_dir(),
    Path = unicode:characters_to_binary(filename:join(Dir, to_list(Name))),
    if
        EpmdMod =:= erl_epmd ->
            {error, {epmdx_uds_needs_epmd_module, epmdx_epmd}};
        byte_size(Path) > ?MAX_PATH ->
            {error, {uds_path_too_long, Path}};
        true ->
            case secure_dir(Dir) of
                ok -> listen_at(Name, Host, Path, EpmdMod);
                Error -> Error
            end
    end.

listen_at(Name, Host, Path, EpmdMod) ->
    case clear_stale(Path) of
        ok ->
            Opts = [local, {ifaddr, {local, Path}}, {active, false}, {packet, 2},
                    {backlog, 128}],
            case gen_tcp:listen(0, Opts) of
                {ok, L} ->
                    Reg = epmdx_epmd:with_transport(
                            {uds, Path}, fun() -> EpmdMod:register_node(Name, 0, local) end),
                    case Reg of
                        {ok, Creation} ->
                            Address = #net_address{address = {local, Path}, host = Host,
                                                   protocol = tcp, family = local},
                            {ok, {L, Address, Creation}};
                        Error ->
                            close(L),
                            Error
                    end;
                {error, Reason} ->
                    {error, {uds_listen_failed, Path, Reason}}
            end;
        Error ->
            Error
    end.

accept(Listen) ->
    inet_tcp_dist:gen_accept(?DRIVER, Listen).

accept_connection(AcceptPid, Socket, MyNode, Allowed, SetupTime) ->
    inet_tcp_dist:gen_accept_connection(?DRIVER, AcceptPid, Socket, MyNode, Allowed,
                                        SetupTime).

setup(Node, Type, MyNode, LongOrShortNames, SetupTime) ->
    inet_tcp_dist:gen_setup(?DRIVER, Node, Type, MyNode, LongOrShortNames, SetupTime).

close(Listen) ->
    case inet:sockname(Listen) of
        {ok, {local, Path}} when byte_size(Path) > 0 -> _ = prim_file:delete(Path);
        _ -> ok
    end,
    gen_tcp:close(Listen).

select(Node) ->
    epmdx_select:select(uds, Node).

address() ->
    {ok, Host} = inet:gethostname(),
    #net_address{host = Host, protocol = tcp, family = local}.

is_node_name(Node) ->
    inet_tcp_dist:is_node_name(Node).

%% ------------------------------------------------------------------

socket_dir() ->
    case application:get_env(kernel, epmdx_uds_dir) of
        {ok, D} -> to_list(D);
        undefined ->
            case os:getenv("ERLDIST_UDS_DIR") of
                D when is_list(D), D =/= "" -> D;
                _ ->
                    case os:getenv("XDG_RUNTIME_DIR") of
                        X when is_list(X), X =/= "" -> filename:join(X, "erldist");
                        _ -> "/tmp/erldist-" ++ integer_to_list(my_uid())
                    end
            end
    end.

%% Creates Dir (mode 0700, parents too) or checks that an existing one is
%% ours and closed to others. prim_file, not file: net_kernel listens
%% before the file server runs.
secure_dir(Dir) ->
    _ = make_dirs(Dir),
    case prim_file:read_file_info(Dir) of
        {ok, #file_info{type = directory, uid = Uid, mode = Mode}} ->
            case Uid =:= my_uid() of
                false ->
                    {error, {uds_dir_owned_by_another_user, Dir}};
                true when Mode band 8#077 =/= 0 ->
                    case prim_file:write_file_info(Dir, #file_info{mode = 8#700}) of
                        ok -> ok;
                        {error, R2} -> {error, {uds_dir, Dir, R2}}
                    end;
                true ->
                    ok
            end;
        {ok, _} ->
            {error, {uds_dir_not_a_directory, Dir}};
        {error, R3} ->
            {error, {uds_dir, Dir, R3}}
    end.

make_dirs(Dir) ->
    case prim_file:read_file_info(Dir) of
        {ok, _} ->
            ok;
        {error, enoent} ->
            Parent = filename:dirname(Dir),
            _ = Parent =/= Dir andalso make_dirs(Parent),
            case prim_file:make_dir(Dir) of
                ok -> prim_file:write_file_info(Dir, #file_info{mode = 8#700});
                E -> E
            end;
        E ->
            E
    end.

clear_stale(Path) ->
    case prim_file:read_link_info(Path) of
        {error, enoent} ->
            ok;
        {ok, _} ->
            case gen_tcp:connect({local, Path}, 0, [local], 1000) of
                {ok, S} ->
                    gen_tcp:close(S),
                    {error, duplicate_name};
                {error, _} ->
                    case prim_file:delete(Path) of
                        ok -> ok;
                        {error, R} -> {error, {cannot_remove_stale_socket, Path, R}}
                    end
            end;
        {error, R} ->
            {error, {uds_path, Path, R}}
    end.

%% /proc/self belongs to the process's effective user.
my_uid() ->
    case prim_file:read_file_info("/proc/self") of
        {ok, #file_info{uid = Uid}} -> Uid;
        _ -> 0
    end.

to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(B) when is_binary(B) -> unicode:characters_to_list(B);
to_list(L) when is_list(L) -> L.
